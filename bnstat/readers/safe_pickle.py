"""A pickle reader that rebuilds data and never runs code from the file.

torch checkpoints are pickles, and a pickle is a program: `torch.load(weights_only=False)`
calls whatever functions the file names. This unpickler answers every global the file asks
for with either an entry of a small allow-list (containers, and bnstat's own tensor
rebuilders that produce lazy `TensorRef`s) or an inert placeholder class. Placeholders
record the arguments and state the pickle gives them and are never called back, so an
optimizer, an `argparse.Namespace` or a Lightning hyper-parameter object still lets the
tensors through, while `os.system` becomes a harmless record naming itself.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from bnstat.dtypes import (
    DTYPES,
    OPAQUE_ITEMSIZES,
    TORCH_DTYPE_NAMES,
    TORCH_STORAGE_DTYPES,
    DType,
    opaque_dtype,
)
from bnstat.errors import CheckpointError
from bnstat.tensor_ref import ByteSource, TensorRef

TORCHSCRIPT_MODULE_PREFIX = "__torch__"


class Opaque:
    """Stand-in for an object whose class is not allow-listed: it records, it never acts."""

    global_name = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: dict[Any, Any]
    elements: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, elements=[])
        return obj

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["elements"].append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__["elements"].extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.global_name}>"


@dataclass(frozen=True)
class StorageKind:
    """What `torch.FloatStorage` and friends unpickle to: only their element type."""

    dtype: DType


@dataclass(frozen=True)
class DTypeMarker:
    """What `torch.float32` and friends unpickle to."""

    dtype: DType


@dataclass(frozen=True)
class StorageRef:
    """A storage named by a persistent id, resolved to its bytes by the reader."""

    dtype: DType
    source: ByteSource
    big_endian: bool = False


StorageResolver = Callable[[str, DType, int], ByteSource]


@dataclass
class PickleResult:
    """The rebuilt object tree and what the pickle asked for that was not honoured."""

    root: Any
    refused_globals: list[str] = field(default_factory=list)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise CheckpointError(f"tensor {what} is not a tuple of non-negative integers")
    for v in value:
        if type(v) is not int or v < 0:  # bool is not int here, as it should be
            raise CheckpointError(f"tensor {what} is not a tuple of non-negative integers")
    return tuple(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: DType | None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise CheckpointError("a tensor refers to something that is not a storage")
    if not _is_count(offset):
        raise CheckpointError("a tensor has an invalid storage offset")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise CheckpointError("a tensor's size and stride differ in length")
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


def latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode`, as protocol 2 uses it for bytes objects; other codecs are refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


def torch_device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
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


def _storage_dtype(name: str) -> DType | None:
    if name in TORCH_STORAGE_DTYPES:
        return DTYPES[TORCH_STORAGE_DTYPES[name]]
    if name in OPAQUE_ITEMSIZES:
        return opaque_dtype(name, OPAQUE_ITEMSIZES[name])
    return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: IO[bytes], resolve: StorageResolver, big_endian: bool) -> None:
        super().__init__(stream)
        self._resolve = resolve
        self._big_endian = big_endian
        self._placeholders: dict[str, type[Opaque]] = {}
        self.refused: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module in ("torch", "torch.storage", "torch.cuda"):
            storage = _storage_dtype(name)
            if storage is not None:
                return StorageKind(storage)
        if module == "torch" and name in TORCH_DTYPE_NAMES:
            return DTypeMarker(DTYPES[TORCH_DTYPE_NAMES[name]])
        return self._placeholder(f"{module}.{name}", module)

    def _placeholder(self, qualified: str, module: str) -> type[Opaque]:
        cls = self._placeholders.get(qualified)
        if cls is None:
            cls = type("Opaque", (Opaque,), {"global_name": qualified})
            self._placeholders[qualified] = cls
            if not module.startswith(TORCHSCRIPT_MODULE_PREFIX):
                self.refused.append(qualified)
        return cls

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id in pickle: {str(pid)[:60]}")
        kind, key, _location, numel = pid[1:5]
        if not isinstance(kind, StorageKind):
            raise CheckpointError("a storage names an unknown storage type")
        if not isinstance(key, str) or not _is_count(numel):
            raise CheckpointError("a storage has a malformed key or size")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views from pre-0.4 torch are not supported")
        return StorageRef(kind.dtype, self._resolve(key, kind.dtype, numel), self._big_endian)


def load_pickle(
    stream: IO[bytes], resolve: StorageResolver, big_endian: bool = False
) -> PickleResult:
    """Rebuild the object tree of the pickle at the stream's position.

    Storages are resolved through `resolve`. The stream is left just after the pickle's
    STOP opcode, so a run of pickles can be read one after another.
    """
    unpickler = _Unpickler(stream, resolve, big_endian)
    try:
        root = unpickler.load()
    except CheckpointError:
        raise
    except RecursionError as err:
        raise CheckpointError("the pickle nests containers too deeply") from err
    except MemoryError as err:
        raise CheckpointError("the pickle asks for more memory than it can hold") from err
    except Exception as err:  # any other failure is a malformed pickle, never a crash
        raise CheckpointError(f"corrupt pickle: {type(err).__name__}: {err}") from err
    return PickleResult(root, unpickler.refused)
