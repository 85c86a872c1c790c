"""`getattr` in a pickle: an attribute reference kept as data, or a step towards running code.

Pickles use `builtins.getattr` for two unrelated things. Protocol 2 pickles a function
nested in a class as `getattr(<its class>, "forward")`, and any protocol a bound method
as `getattr(<its object>, "forward")`: a reference, no more dangerous than the class
reference beside it (BN012's business). Exploits use it to reach what a global
cannot name directly: `getattr(__import__("os"), "system")(...)`, `getattr(obj,
"__globals__")`. The unpickler logs every getattr call it answers with a placeholder,
and whether a result (or getattr itself) was ever called, handed to another call (which
may call it) or set as a special attribute (the `__setstate__` gadget). When every call
was a plain attribute of a harmless class and nothing escaped, the calls are reported as
the attribute references they are (`pkg.Detect.forward (through builtins.getattr)`);
otherwise `builtins.getattr` stays named, and BN011 fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnstat.readers.pickle_risk import harmless_lookup, lookup_name

GETATTR = frozenset({"builtins.getattr", "__builtin__.getattr"})


@dataclass
class LookupLog:
    """The getattr calls one pickle makes, and whether any result may be called."""

    references: list[tuple[str | None, Any]] = field(default_factory=list)  # (class, name)
    escaped: bool = False
    function: object = None  # getattr's own placeholder, which escapes like its results
    _results: dict[int, object] = field(default_factory=dict)  # kept alive: ids stay unique

    def made(
        self, callee: object, args: tuple[Any, ...], kwargs: dict[str, Any], result: object
    ) -> None:
        """A placeholder was called (a refused class or function): what it is handed may be
        called in turn; a getattr call is logged with the class it looks the name up on.

        A call without exactly two arguments is logged as looking up nothing nameable.
        """
        self.handed((*args, *kwargs.values()))
        if callee is not self.function:
            return
        owner = self._owner(args[0]) if len(args) == 2 and not kwargs else None
        self.references.append((owner, args[1] if owner is not None else None))
        self._results[id(result)] = result

    def _owner(self, target: object) -> str | None:
        """What a name is looked up on: a class the pickle names (answered with a
        placeholder class carrying its `global_name`: `pkg.Head`), an object it built
        from one (`pkg.Head()`); None for anything else (a getattr result, a module an
        import returned, plain data)."""
        if isinstance(target, type):
            name = getattr(target, "global_name", None)
            return name if target is not self.function else None
        built = type(target)
        if id(target) in self._results or built is self.function:
            return None
        name = getattr(built, "global_name", None)
        return f"{name}()" if name is not None else None

    def handed(self, values: Iterable[Any]) -> None:
        """Arguments of a call: a getattr result (or getattr itself) among them escapes."""
        if self.function is None:
            return  # the pickle names no getattr: nothing to look for
        for value in values:
            if id(value) in self._results or value is self.function:
                self.escaped = True

    def called(self, value: object) -> None:
        """A placeholder was called: if it is a getattr result, that result ran."""
        if id(value) in self._results:
            self.escaped = True

    def set_on(self, state: Any) -> None:
        """BUILD state: a getattr result set as a special attribute (`__setstate__`, ...)
        is called by the next BUILD when the pickle is loaded for real."""
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if isinstance(part, Mapping):
                special = [v for k, v in part.items() if isinstance(k, str) and k.startswith("__")]
                self.handed(special)

    def renamed(self, refused: list[str]) -> list[str]:
        """`refused` with getattr replaced by the attribute references it made, when every
        call was harmless; unchanged otherwise."""
        if self.escaped or not self.references:
            return refused
        if not all(t is not None and harmless_lookup(t, a) for t, a in self.references):
            return refused
        names = [lookup_name(str(t), str(a)) for t, a in self.references]
        kept = [name for name in refused if name not in GETATTR]
        return list(dict.fromkeys([*kept, *names]))
