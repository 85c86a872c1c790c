"""A module or a state dict in memory, read like a checkpoint: nothing pickled, nothing written.

`bnstat.check(model)` and `bnstat.diagnose` run the same stages as a file does. This
reader gives them a `RawCheckpoint` whose tree is the caller's object, every tensor (or
numpy array) in it described by a `TensorRef` whose bytes are taken from memory only
when a rule reads them (the BatchNorm tensors, as from a file). A module stands for its
`state_dict()`, with what no state dict records: each normalization layer's class, real
eps and momentum (`ModuleConstants`). A state dict is any mapping of tensors, nested as
files nest them (`{"state_dict": ..., "ema": ...}`, lists; a module inside counts as its
state dict). Torch is not imported here: a caller holding tensors has it loaded already.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnstat.dtypes import DTYPES
from bnstat.readers.base import CheckpointFormat, ModuleConstants, RawCheckpoint
from bnstat.tensor_ref import TensorRef

BIG_ENDIAN = sys.byteorder == "big"


@dataclass(frozen=True)
class _Memory:
    """A tensor's or array's bytes, taken from memory when they are read."""

    value: Any

    @property
    def size(self) -> int:
        return int(self.value.nbytes)

    @property
    def file_offset(self) -> int | None:
        return None

    def read(self, start: int, length: int) -> bytes:
        return _bytes(self.value)[start : start + length]


def _bytes(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value).tobytes()
    flat = value.detach().reshape(-1).contiguous().cpu()
    return bytes(flat.view(_torch().uint8).numpy().data)


def _torch() -> Any:
    return sys.modules.get("torch")


def _is_tensor(value: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _is_module(value: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.nn.Module)


def _ref(value: Any) -> TensorRef | None:
    """The lazy description of a tensor or array (None for an element type files lack)."""
    name = str(value.dtype).removeprefix("torch.")
    dtype = DTYPES.get({"bool_": "bool"}.get(name, name))
    if dtype is None:
        return None
    return TensorRef(dtype, tuple(int(n) for n in value.shape), _Memory(value), 0, None, BIG_ENDIAN)


class _Reader:
    """Walks the caller's object; collects the constants of the modules met on the way."""

    def __init__(self) -> None:
        self.constants: dict[str, ModuleConstants] = {}

    def tree(self, value: Any) -> Any:
        if _is_tensor(value) or isinstance(value, np.ndarray):
            return _ref(value)
        if _is_module(value):
            self.constants.update(module_constants(value))
            return self.tree(value.state_dict())
        if isinstance(value, Mapping):
            return {key: self.tree(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value


def module_constants(module: Any) -> dict[str, ModuleConstants]:
    """By name in the module: the class, eps and momentum of every layer with running
    statistics."""
    found = {}
    for name, child in module.named_modules():
        if getattr(child, "running_mean", None) is not None and hasattr(child, "eps"):
            momentum = getattr(child, "momentum", None)
            found[name] = ModuleConstants(
                type(child).__name__,
                float(child.eps),
                float(momentum) if momentum is not None else None,
            )
    return found


def read_in_memory(target: Any) -> RawCheckpoint:
    """The checkpoint a module or a (nested) state dict in memory stands for."""
    reader = _Reader()
    root = reader.tree(target)
    module = _is_module(target)
    return RawCheckpoint(
        Path(f"<{type(target).__name__}>" if module else "<state dict>"),
        CheckpointFormat.MODULE if module else CheckpointFormat.STATE_DICT,
        root,
        layer_modules=reader.constants,
    )
