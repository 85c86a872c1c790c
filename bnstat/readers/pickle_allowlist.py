"""What a checkpoint's pickle may ask for: the allow-list and the data it rebuilds.

torch checkpoints name a handful of globals to rebuild their data: `OrderedDict`, the
tensor rebuilders of `torch._utils`, storage classes (`torch.FloatStorage`), dtypes and a
few TorchScript helpers. Each allowed global maps here to bnstat's own implementation,
which builds plain data or a lazy `TensorRef` and validates every argument (sizes, strides
and offsets are non-negative int64s, shapes cannot overflow); storage classes and dtypes
become markers that carry only their element type. Everything else the pickle names is
the business of `safe_pickle`: an inert placeholder.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from bnstat.dtypes import (
    DTYPES,
    OPAQUE_ITEMSIZES,
    TORCH_DTYPE_NAMES,
    TORCH_STORAGE_DTYPES,
    DType,
    opaque_dtype,
)
from bnstat.errors import CheckpointError
from bnstat.tensor_ref import ByteSource, TensorRef, checked_numel

MAX_DIMENSION = 2**63  # torch sizes, strides and offsets are int64


class PickledOrderedDict(collections.OrderedDict[Any, Any]):
    """What `collections.OrderedDict` unpickles to: one that ignores pickled attributes.

    A state dict pickles its `_metadata` attribute, which bnstat does not need; setting
    attributes from the file would let a pickle copy one large dict again and again.
    """

    def __setstate__(self, state: Any) -> None:
        pass


@dataclass(frozen=True, slots=True)
class StorageKind:
    """What `torch.FloatStorage` and friends unpickle to: only their element type."""

    dtype: DType


@dataclass(frozen=True, slots=True)
class DTypeMarker:
    """What `torch.float32` and friends unpickle to."""

    dtype: DType


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage named by a persistent id, resolved to its bytes by the reader."""

    dtype: DType
    source: ByteSource
    big_endian: bool = False


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise CheckpointError(f"tensor {what} is not a tuple of non-negative integers")
    for v in value:
        if type(v) is not int or not 0 <= v < MAX_DIMENSION:  # bool is not int here
            raise CheckpointError(f"tensor {what} is not a tuple of non-negative integers")
    return tuple(value)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_DIMENSION


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: DType | None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise CheckpointError("a tensor refers to something that is not a storage")
    if not is_count(offset):
        raise CheckpointError("a tensor has an invalid storage offset")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise CheckpointError("a tensor's size and stride differ in length")
    checked_numel(shape)
    return TensorRef(
        dtype or storage.dtype, shape, storage.source, offset, strides, storage.big_endian
    )


def rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorRef:
    return _tensor(storage, offset, size, stride, None)


def rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, _grad: Any, _hooks: Any, dtype: Any, *_: Any
) -> TensorRef:
    if not isinstance(dtype, DTypeMarker):
        raise CheckpointError("a tensor has an unknown dtype")
    return _tensor(storage, offset, size, stride, dtype.dtype)


def rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def rebuild_from_type(func: Any, _new_type: Any, args: Any, _state: Any = None) -> Any:
    """Tensor subclasses: rebuild the plain tensor; `func` is itself allow-listed or inert."""
    if not isinstance(args, tuple):
        raise CheckpointError("a tensor subclass has malformed arguments")
    return func(*args)


def first_argument(value: Any, *_: Any) -> Any:
    return value


def latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode`, as protocol 2 uses it for bytes objects; other codecs are refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        codec = repr(encoding[:20]) if isinstance(encoding, str) else type(encoding).__name__
        raise CheckpointError(f"refused _codecs.encode with codec {codec}")
    return text.encode("latin1")


def torch_device(*args: Any) -> str:
    if not all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
        raise CheckpointError("a torch.device with arguments that are not names or numbers")
    return ":".join(str(a) for a in args)[:100]


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): PickledOrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("_codecs", "encode"): latin1_bytes,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type"): rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): rebuild_from_type,
    ("torch", "Size"): tuple,
    ("torch", "device"): torch_device,
    ("torch.jit._pickle", "build_intlist"): first_argument,
    ("torch.jit._pickle", "build_doublelist"): first_argument,
    ("torch.jit._pickle", "build_boollist"): first_argument,
    ("torch.jit._pickle", "build_tensorlist"): first_argument,
    ("torch.jit._pickle", "restore_type_tag"): first_argument,
}


HASHED_ITEM = 64  # bytes per element for a callee that may copy a container into a set
COPY_BYTES = {  # callees that copy less, or nothing
    ("_codecs", "encode"): 1,
    ("torch", "Size"): 8,
    ("torch", "device"): 1,
    ("torch._utils", "_rebuild_parameter"): 0,
    ("torch._utils", "_rebuild_parameter_with_state"): 0,
    ("torch.jit._pickle", "build_intlist"): 0,
    ("torch.jit._pickle", "build_doublelist"): 0,
    ("torch.jit._pickle", "build_boollist"): 0,
    ("torch.jit._pickle", "build_tensorlist"): 0,
    ("torch.jit._pickle", "restore_type_tag"): 0,
}


def _storage_dtype(name: str) -> DType | None:
    if name in TORCH_STORAGE_DTYPES:
        return DTYPES[TORCH_STORAGE_DTYPES[name]]
    if name in OPAQUE_ITEMSIZES:
        return opaque_dtype(name, OPAQUE_ITEMSIZES[name])
    return None


def data_global(module: str, name: str) -> StorageKind | DTypeMarker | None:
    """What a storage type or dtype global unpickles to, or None for any other global."""
    if module in ("torch", "torch.storage", "torch.cuda"):
        storage = _storage_dtype(name)
        if storage is not None:
            return StorageKind(storage)
    if module == "torch" and name in TORCH_DTYPE_NAMES:
        return DTypeMarker(DTYPES[TORCH_DTYPE_NAMES[name]])
    return None
