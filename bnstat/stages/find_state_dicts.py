"""Find the state dicts inside a checkpoint's object tree, whatever its nesting.

Checkpoints nest their weights (`state_dict`, `model`, `ema`, `net`, ...), wrap their keys
(`module.` from DataParallel/DDP, `_orig_mod.` from torch.compile, `model.` from
Lightning), pickle whole modules, or (TorchScript) store module objects. This module walks
the tree once and returns every mapping that holds tensors directly, named by where it
sits, with common wrapper prefixes removed, so no flag is needed to say where to look.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnstat.errors import CheckpointError
from bnstat.readers.base import ModuleConstants, RawCheckpoint, printable
from bnstat.readers.safe_pickle import TORCHSCRIPT_MODULE_PREFIX, Opaque
from bnstat.tensor_ref import TensorRef

MAX_DEPTH = 200
MAX_WRAPPERS = 16  # nested DDP/compile/Lightning wrappers stripped from one state dict
MAX_MODULE_VISITS = 2**17  # module objects visited while flattening pickled modules
MAX_KEY_LENGTH = 4096  # characters of a tensor key built from nested module names
MAX_STATE_DICTS = 2**20  # tensor-holding mappings (an optimizer state has one per parameter)
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
BOOKKEEPING_KEYS = frozenset({"n_averaged"})
_MODULE_STATE_KEYS = ("_parameters", "_buffers", "_modules")


@dataclass
class StateDict:
    """Tensors of one model in the file, keyed as `model.state_dict()` would key them."""

    name: str | None  # path inside the file ("ema", "state_dict"); None for the top level
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    modules: dict[str, ModuleConstants] = field(default_factory=dict)  # by module prefix
    stripped_prefix: str = ""
    pickled_module: bool = False  # flattened from a whole pickled nn.Module


def find_state_dicts(checkpoint: RawCheckpoint) -> list[StateDict]:
    """Every tensor-holding mapping or module in the file, in file order."""
    finder = _Finder(checkpoint.module_classes)
    try:
        finder.walk(checkpoint.root, ())
    except RecursionError as err:
        raise CheckpointError("the checkpoint nests modules or containers too deeply") from err
    for found in finder.found:
        _attach_layer_modules(found, checkpoint.layer_modules)
        strip_wrapper_prefixes(found)
    return finder.found


def _attach_layer_modules(state: StateDict, layer_modules: Mapping[str, ModuleConstants]) -> None:
    """Give a state dict the constants the file records for its layers, by key prefix."""
    for prefix, constants in layer_modules.items():
        if (f"{prefix}.running_mean" if prefix else "running_mean") in state.tensors:
            known = state.modules.get(prefix)
            state.modules[prefix] = constants if known is None else known.merged(constants)


def strip_wrapper_prefixes(state: StateDict) -> None:
    """Remove `module.`, `_orig_mod.` and `model.` while every key carries one of them.

    Bookkeeping entries of wrappers (`n_averaged` of `AveragedModel`) do not count.
    """
    for _ in range(MAX_WRAPPERS):
        keys = [k for k in state.tensors if k not in BOOKKEEPING_KEYS]
        prefix = next(
            (p for p in WRAPPER_PREFIXES if keys and all(k.startswith(p) for k in keys)), None
        )
        if prefix is None:
            return
        state.tensors = {k.removeprefix(prefix): t for k, t in state.tensors.items()}
        state.modules = {
            k.removeprefix(prefix): m for k, m in state.modules.items() if k.startswith(prefix)
        }
        state.stripped_prefix += prefix


def _name(key: Any) -> str:
    """A key of the file as a name: itself if a string, else short (keys can be anything)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, int | float):
        return str(key)[:40]
    return f"<{type(key).__name__}>"


def _path_name(path: tuple[str, ...]) -> str | None:
    return printable("/".join(path)) if path else None


def _module_kind(obj: Opaque) -> str:
    return obj.global_name.rsplit(".", 1)[-1]


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Finder:
    def __init__(self, module_classes: Mapping[str, ModuleConstants]) -> None:
        self.found: list[StateDict] = []
        self._seen: set[int] = set()
        self._module_classes = module_classes
        self._module_visits = 0

    def _visit_module(
        self, obj: Opaque, prefix: str, ancestors: tuple[int, ...]
    ) -> tuple[int, ...]:
        """Count a module visit; a module may appear twice (shared), never inside itself.

        A pickle can make a module tree a graph whose paths double at every level, or
        give it names of any length; the visit count and key length bound the work.
        """
        if len(prefix) > MAX_KEY_LENGTH:
            raise CheckpointError(f"a module name in the checkpoint is over {MAX_KEY_LENGTH} long")
        self._module_visits += 1
        if self._module_visits > MAX_MODULE_VISITS:
            raise CheckpointError(
                f"the checkpoint's module tree has over {MAX_MODULE_VISITS} module paths"
            )
        if id(obj) in ancestors:
            raise CheckpointError(f"a pickled module ({obj.global_name}) contains itself")
        if len(ancestors) > MAX_DEPTH:
            raise CheckpointError(f"the checkpoint nests modules more than {MAX_DEPTH} deep")
        return (*ancestors, id(obj))

    def walk(self, node: Any, path: tuple[str, ...]) -> None:
        if len(path) > MAX_DEPTH:
            raise CheckpointError(f"the checkpoint nests containers more than {MAX_DEPTH} deep")
        if not isinstance(node, Mapping | list | tuple | Opaque) or id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, Opaque):
            self._walk_object(node, path)
        elif isinstance(node, Mapping):
            self._walk_mapping(node, path)
        else:
            for index, child in enumerate(node):
                self.walk(child, (*path, str(index)))

    def _walk_mapping(self, node: Mapping[Any, Any], path: tuple[str, ...]) -> None:
        tensors = {k: v for k, v in node.items() if isinstance(v, TensorRef) and isinstance(k, str)}
        if tensors:
            self._add(StateDict(_path_name(path), tensors))
        for key, child in node.items():
            if not isinstance(child, TensorRef):
                self.walk(child, (*path, _name(key)))

    def _walk_object(self, obj: Opaque, path: tuple[str, ...]) -> None:
        state = obj.state
        if isinstance(state, Mapping) and any(k in state for k in _MODULE_STATE_KEYS):
            self._add_module(obj, path, self._flatten_nn_module, pickled_module=True)
        elif obj.global_name.startswith(TORCHSCRIPT_MODULE_PREFIX) and isinstance(state, Mapping):
            self._add_module(obj, path, self._flatten_scripted)
        else:  # an unknown object: its state, items and arguments may hold a state dict
            for part in (obj.state, obj.items, obj.elements, obj.args):
                self.walk(part, path)

    def _add_module(
        self, obj: Opaque, path: tuple[str, ...], flatten: Any, pickled_module: bool = False
    ) -> None:
        found = StateDict(_path_name(path), pickled_module=pickled_module)
        for key, value in flatten(obj, "", ()):
            if isinstance(value, TensorRef):
                found.tensors[key] = value
            else:
                found.modules[key] = value
        if found.tensors:
            self._add(found)

    def _add(self, found: StateDict) -> None:
        if len(self.found) >= MAX_STATE_DICTS:
            raise CheckpointError(
                f"the checkpoint holds over {MAX_STATE_DICTS} mappings of tensors: refused"
            )
        self.found.append(found)

    def _flatten_scripted(
        self, obj: Opaque, prefix: str, ancestors: tuple[int, ...]
    ) -> Iterator[tuple[str, Any]]:
        ancestors = self._visit_module(obj, prefix, ancestors)
        constants = self._module_classes.get(obj.global_name)
        if constants is not None:
            yield prefix.rstrip("."), constants
        for name, value in obj.state.items():
            if isinstance(value, TensorRef):
                yield prefix + _name(name), value
            elif isinstance(value, Opaque) and isinstance(value.state, Mapping):
                yield from self._flatten_scripted(value, f"{prefix}{_name(name)}.", ancestors)

    def _flatten_nn_module(
        self, obj: Opaque, prefix: str, ancestors: tuple[int, ...]
    ) -> Iterator[tuple[str, Any]]:
        """Parameters and buffers of a pickled `nn.Module` tree, named as `state_dict()` does."""
        ancestors = self._visit_module(obj, prefix, ancestors)
        yield from _module_members(obj, prefix)
        children = obj.state.get("_modules")
        if isinstance(children, Mapping):
            for name, child in children.items():
                if isinstance(child, Opaque) and isinstance(child.state, Mapping):
                    yield from self._flatten_nn_module(child, f"{prefix}{_name(name)}.", ancestors)


def _module_members(obj: Opaque, prefix: str) -> Iterator[tuple[str, Any]]:
    """A pickled module's own constants, parameters and buffers."""
    state = obj.state
    buffers = state.get("_buffers")
    if isinstance(buffers, Mapping) and isinstance(buffers.get("running_mean"), TensorRef):
        yield (
            prefix.rstrip("."),
            ModuleConstants(
                kind=_module_kind(obj),
                eps=_float_or_none(state.get("eps")),
                momentum=_float_or_none(state.get("momentum")),
            ),
        )
    for group in ("_parameters", "_buffers"):
        members = state.get(group)
        if isinstance(members, Mapping):
            for name, value in members.items():
                if isinstance(value, TensorRef):
                    yield prefix + _name(name), value
