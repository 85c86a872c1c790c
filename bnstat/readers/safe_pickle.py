"""A pickle reader that rebuilds data and never runs code from the file.

torch checkpoints are pickles, and a pickle is a program: `torch.load(weights_only=False)`
calls whatever functions the file names. This unpickler answers every global the file asks
for with either an entry of a small allow-list (`pickle_allowlist`: containers, and
bnstat's own tensor rebuilders that produce lazy `TensorRef`s) or an inert placeholder
class. Placeholders
record the arguments and state the pickle gives them and are never called back, so an
optimizer, an `argparse.Namespace` or a Lightning hyper-parameter object still lets the
tensors through, while `os.system` becomes a harmless record naming itself.

Nor can a pickle make loading it cost without bound: `bnstat.readers.pickle_scan` walks
its opcodes first and charges what they allocate to a budget, and every call the
unpickler makes here (allow-listed functions, placeholders) charges what it copies to the
same budget, so an argument handed out again and again by the memo cannot multiply.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError, UnsupportedCheckpointError
from bnstat.readers.base import RawCheckpoint, printable
from bnstat.readers.pickle_allowlist import (
    ALLOWED,
    COPY_BYTES,
    HASHED_ITEM,
    PickledOrderedDict,
    StorageKind,
    StorageRef,
    data_global,
    is_count,
)
from bnstat.readers.pickle_lookups import GETATTR, LookupLog
from bnstat.readers.pickle_scan import PickleBudget, PickleScanner
from bnstat.tensor_ref import ByteSource

TORCHSCRIPT_MODULE_PREFIX = "__torch__"
_OPAQUE_BYTES = 640  # a placeholder instance with its attribute dict and empty containers
SHOWN_GLOBALS = 6


class Opaque:
    """Stand-in for an object whose class is not allow-listed: it records, it never acts."""

    global_name = "?"
    budget: PickleBudget | None = None  # the load that creates instances pays for them
    lookups: LookupLog | None = None  # the load's getattr calls, once it makes one
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: dict[Any, Any]
    elements: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        if cls.budget is not None:
            cls.budget.charge(_OPAQUE_BYTES + _call_bytes(args, kwargs, 0), cls.global_name)
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, elements=[])
        if cls.lookups is not None:
            cls.lookups.made(cls, args, kwargs, obj)
        return obj

    def __setstate__(self, state: Any) -> None:
        if self.lookups is not None:
            self.lookups.set_on(state)
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        """Calling a placeholder (a refused call's result) records another placeholder."""
        if self.lookups is not None:
            self.lookups.called(self)
        return type(self)(*args, **kwargs)

    def append(self, value: Any) -> None:
        self.__dict__["elements"].append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__["elements"].extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.global_name}>"


StorageResolver = Callable[[str, DType, int], ByteSource]


@dataclass
class PickleResult:
    """The rebuilt object tree and what the pickle asked for that was not honoured."""

    root: Any
    refused_globals: list[str] = field(default_factory=list)
    end: int = 0  # offset just after the pickle's STOP opcode


_SIZED = frozenset({str, bytes, bytearray, tuple, list, dict, set, frozenset, PickledOrderedDict})


def _call_bytes(args: tuple[Any, ...], kwargs: dict[str, Any], item_bytes: int) -> int:
    """What a call may allocate: its argument tuple, plus `item_bytes` per element of each
    argument that is a container or string (what a callee that copies it needs)."""
    total = 8 * (len(args) + len(kwargs))
    if item_bytes:
        sized = _SIZED
        for value in (*args, *kwargs.values()) if kwargs else args:
            if type(value) in sized:
                total += item_bytes * len(value)
    return total


class _Guarded:
    """An allow-listed callable that charges the load's budget for its arguments first.

    Instances have no `__dict__`, so BUILD cannot set attributes on them either.
    """

    __slots__ = ("budget", "func", "item_bytes", "lookups", "name")

    def __init__(self, key: tuple[str, str], budget: PickleBudget, lookups: LookupLog) -> None:
        self.func, self.name, self.budget = ALLOWED[key], ".".join(key), budget
        self.item_bytes = COPY_BYTES.get(key, HASHED_ITEM)
        self.lookups = lookups

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.budget.charge(_call_bytes(args, kwargs, self.item_bytes), self.name)
        self.lookups.handed((*args, *kwargs.values()))
        return self.func(*args, **kwargs)


def unlisted_globals(found: Iterable[tuple[str, str]]) -> list[str]:
    """Of (module, name) globals, those the unpickler would refuse and report."""
    return [
        printable(f"{module}.{name}")
        for module, name in found
        if (module, name) not in ALLOWED
        and data_global(module, name) is None
        and not module.startswith(TORCHSCRIPT_MODULE_PREFIX)
    ]


Honoured = Mapping[tuple[str, str], Callable[..., Any]]


class _Unpickler(pickle.Unpickler):
    def __init__(
        self,
        data: bytes,
        resolve: StorageResolver,
        big_endian: bool,
        budget: PickleBudget,
        honoured: Honoured,
    ) -> None:
        super().__init__(io.BytesIO(data))
        self._resolve = resolve
        self._big_endian = big_endian
        self._budget = budget
        self._honoured = honoured
        self._placeholders: dict[str, type[Opaque]] = {}
        self._guarded: dict[tuple[str, str], _Guarded] = {}
        self.refused: list[str] = []
        self.lookups = LookupLog()

    def find_class(self, module: str, name: str) -> Any:
        honoured = self._honoured.get((module, name))
        if honoured is not None:
            return honoured
        allowed = ALLOWED.get((module, name))
        if allowed is not None:
            guarded = self._guarded.get((module, name))
            if guarded is None:
                guarded = _Guarded((module, name), self._budget, self.lookups)
                self._guarded[module, name] = guarded
            return guarded
        return data_global(module, name) or self._placeholder(printable(f"{module}.{name}"), module)

    def _placeholder(self, qualified: str, module: str) -> type[Opaque]:
        cls = self._placeholders.get(qualified)
        if cls is None:
            fields = {"global_name": qualified, "budget": self._budget, "lookups": self.lookups}
            cls = type("Opaque", (Opaque,), fields)
            if qualified in GETATTR:
                self.lookups.function = cls
            self._placeholders[qualified] = cls
            if not module.startswith(TORCHSCRIPT_MODULE_PREFIX):
                self.refused.append(qualified)
        return cls

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            what = repr(pid[0])[:40] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise CheckpointError(f"unsupported persistent id in pickle: {what}")
        kind, key, _location, numel = pid[1:5]
        if not isinstance(kind, StorageKind):
            raise CheckpointError("a storage names an unknown storage type")
        if not isinstance(key, str) or len(key) > 4096 or not is_count(numel):
            raise CheckpointError("a storage has a malformed key or size")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsupportedCheckpointError("storage views from pre-0.4 torch are not supported")
        return StorageRef(kind.dtype, self._resolve(key, kind.dtype, numel), self._big_endian)


def scan_pickle(data: bytes) -> PickleScanner:
    """Check the pickle at the start of `data` against the budget and find its end."""
    scanner = PickleScanner()
    if scanner.scan(data) is None:
        raise CheckpointError(
            f"corrupt pickle: truncated (its {len(data)} bytes end without a STOP opcode)"
        )
    return scanner


def load_pickle(
    data: bytes,
    resolve: StorageResolver,
    big_endian: bool = False,
    scanned: PickleScanner | None = None,
    honoured: Honoured | None = None,
) -> PickleResult:
    """Rebuild the object tree of the pickle at the start of `data`.

    Storages are resolved through `resolve`. The pickle is first scanned (unless
    `scanned` is that scan), so a pickle whose loading would exceed the budget is refused
    before any of it runs; `end` of the result is where the pickle stops in `data`.
    `honoured` maps globals outside the allow-list to the reader's own safe versions of
    them (which charge the scan's budget themselves).
    """
    scanner = scanned if scanned is not None else scan_pickle(data)
    unpickler = _Unpickler(data, resolve, big_endian, scanner.budget, honoured or {})
    try:
        root = unpickler.load()
    except CheckpointError as err:
        raise CheckpointError(naming_refused(str(err), unpickler.refused)) from err
    except RecursionError as err:
        message = "the pickle nests containers too deeply"
        raise CheckpointError(naming_refused(message, unpickler.refused)) from err
    except MemoryError as err:
        message = "the pickle asks for more memory than it can hold"
        raise CheckpointError(naming_refused(message, unpickler.refused)) from err
    except Exception as err:  # any other failure is a malformed pickle, never a crash
        message = f"corrupt pickle: {type(err).__name__}: {str(err)[:200]}"
        raise CheckpointError(naming_refused(message, unpickler.refused)) from err
    return PickleResult(root, unpickler.lookups.renamed(unpickler.refused), scanner.pos)


def filled(checkpoint: RawCheckpoint, fill: Callable[[], None]) -> RawCheckpoint:
    """Run a pickle reader's `fill`; on failure close the file, and name in the error the
    globals the pickle asked for before it failed."""
    try:
        fill()
    except CheckpointError as err:
        checkpoint.close()
        raise CheckpointError(naming_refused(str(err), checkpoint.refused_globals)) from err
    except BaseException:
        checkpoint.close()
        raise
    return checkpoint


def naming_refused(message: str, refused: Sequence[str]) -> str:
    """An error that also says which globals the file's pickles asked for before it failed."""
    unnamed = [name for name in dict.fromkeys(refused) if name not in message]
    if not unnamed:
        return message
    shown = ", ".join(unnamed[:SHOWN_GLOBALS]) + (", ..." if len(unnamed) > SHOWN_GLOBALS else "")
    return f"{message}; the pickle references {shown} (refused, not run)"
