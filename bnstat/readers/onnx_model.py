"""ONNX models (the optional extra `bnstat[onnx]`): every BatchNormalization node is a layer.

An exported model has no state dict. Its BatchNorm layers are BatchNormalization nodes
whose scale, bias, mean and variance are stored inputs and whose epsilon is an attribute,
so the eps the rules use is the model's own (`eps_source` "file"). The protobuf is parsed
with the `onnx` package, imported here only when an ONNX file is met, and nothing in the
model is run. Tensors stay lazy: those inside the file are taken from the parsed protobuf,
those in external-data side files are byte ranges of those files (which must lie inside
the model's folder), only when a rule reads them.

A model without BatchNormalization nodes (an exporter folded them into the convolutions)
is still a model: its initializers are listed, under keys no layer can take, so that the
report says zero layers and BN013 says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bnstat.dtypes import DTYPES, DType, encode
from bnstat.errors import (
    BnstatError,
    CheckpointError,
    MissingDependencyError,
    UnsupportedCheckpointError,
)
from bnstat.location import Location, Opened, open_bytes, within
from bnstat.readers.base import CheckpointFormat, ModuleConstants, RawCheckpoint, printable
from bnstat.readers.onnx_graph import (
    BATCHNORM,
    BatchNormNode,
    Stored,
    batchnorm_nodes,
    layer_followers,
    text,
)
from bnstat.tensor_ref import (
    ByteSource,
    FileRegion,
    MemoryRegion,
    TensorRef,
    checked_numel,
)

if TYPE_CHECKING:
    from onnx import ModelProto, TensorProto

# TensorProto.DataType codes -> canonical dtype names
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}  # fmt: skip
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# the repeated field that holds a tensor's values when it has no raw_data; the other
# types (float16 and bfloat16 as bit patterns, small integers, bool) widen into int32_data
TYPED_FIELDS = {"float32": "float_data", "float64": "double_data", "int64": "int64_data"}
TYPED_FIELDS |= {"uint32": "uint64_data", "uint64": "uint64_data"}


def load_model(path: Location, external_data: bool = False) -> ModelProto:
    """The parsed ModelProto (external tensors left in their files unless asked for, which
    only a local model can be: recalibration reads a remote one from a local copy)."""
    try:
        from onnx import load, load_model_from_string
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", "reading ONNX models") from None
    try:
        if external_data:
            return load(str(path), load_external_data=True)
        return load_model_from_string(_whole(path))
    except OSError as err:
        raise CheckpointError(f"cannot read: {err.strerror or err}") from err
    except (MemoryError, CheckpointError):
        raise
    except Exception as err:  # protobuf's DecodeError and whatever a corrupt file causes
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"not a valid ONNX model: {type(err).__name__}: {first_line}"
        ) from err


def _whole(path: Location) -> bytes:
    """A model's bytes: the protobuf is parsed whole."""
    file = open_bytes(path)
    try:
        return file.pread(0, file.size)
    finally:
        file.close()


def external_data_files(path: Location) -> set[Location]:
    """The side files an ONNX model keeps tensors in (empty if it cannot be read here)."""
    try:
        model = load_model(path)
    except BnstatError:
        return set()
    found: set[Location] = set()
    for tensor in model.graph.initializer:
        location = next(
            (text(entry.value) for entry in tensor.external_data if entry.key == "location"),
            None,
        )
        if location:
            found.add((path.parent / location).resolve())
    return found


def read_onnx(path: Location) -> RawCheckpoint:
    """The BatchNorm tensors of every BatchNormalization node, eps from its attribute."""
    model = load_model(path)
    layers = batchnorm_nodes(model.graph)
    tensors = StoredTensors(path.parent)
    checkpoint = RawCheckpoint(path, CheckpointFormat.ONNX, {}, closers=[tensors.close])
    try:
        checkpoint.root = (
            _layer_tensors(layers, tensors) if layers else _all_tensors(model, tensors)
        )
    except BaseException:
        checkpoint.close()
        raise
    followers = layer_followers(model.graph, layers)
    checkpoint.layer_modules = {
        layer.name: ModuleConstants(BATCHNORM, layer.eps, follower=followers.get(layer.name))
        for layer in layers
    }
    return checkpoint


def _layer_tensors(layers: list[BatchNormNode], tensors: StoredTensors) -> dict[str, TensorRef]:
    return {
        f"{layer.name}.{leaf}": tensors.ref(stored, f"{layer.name}: {leaf}")
        for layer in layers
        for leaf, stored in layer.inputs.items()
    }


def _all_tensors(model: ModelProto, tensors: StoredTensors) -> dict[str, TensorRef]:
    """Every initializer, keyed `initializer[NAME]`: never `<prefix>.running_mean`."""
    return {
        f"initializer[{printable(text(t.name))}]": tensors.tensor_ref(t, printable(text(t.name)))
        for t in model.graph.initializer
        if t.data_type in ONNX_DTYPES
    }


class StoredTensors:
    """`TensorRef`s for stored ONNX tensors; every external-data file is opened once."""

    def __init__(self, folder: Location) -> None:
        self.folder = folder
        self._files: dict[Location, Opened] = {}

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()

    def ref(self, stored: Stored, what: str) -> TensorRef:
        """The values of a stored input; BatchNorm statistics must be floating point."""
        if stored.attribute is not None:  # a Constant's value_float(s): float32
            single = stored.attribute.name == "value_float"
            values = np.asarray(
                [stored.attribute.f] if single else list(stored.attribute.floats), dtype="<f4"
            )
            return _in_memory(values.reshape(() if single else -1), DTYPES["float32"])
        ref = self._fill(stored, what) if stored.is_fill else None
        if ref is None:
            assert stored.tensor is not None
            ref = self.tensor_ref(stored.tensor, what)
        if not ref.dtype.is_float:
            raise CheckpointError(f"{what} is stored as {ref.dtype.name}, not as floating point")
        return ref

    def _fill(self, stored: Stored, what: str) -> TensorRef:
        """A ConstantOfShape: its fill value (default float32 0) repeated to its shape.

        The value is stored once and viewed with stride 0, so a huge shape costs nothing
        until read, and reading it is bounded like any other expanding view.
        """
        assert stored.shape is not None and stored.shape.tensor is not None
        dims = self.tensor_ref(stored.shape.tensor, f"{what} (shape)").read().reshape(-1)
        if stored.tensor is None:
            value, dtype = np.zeros(1, "<f4"), DTYPES["float32"]
        else:
            fill = self.tensor_ref(stored.tensor, f"{what} (fill value)")
            value, dtype = fill.read().reshape(-1), fill.dtype
        if value.size != 1 or dims.dtype.kind not in "iu" or (dims < 0).any():
            raise CheckpointError(f"{what}: a ConstantOfShape with an invalid shape or value")
        shape = tuple(int(d) for d in dims)
        checked_numel(shape)
        source = MemoryRegion(encode(value, dtype))
        return TensorRef(dtype, shape, source, strides=(0,) * len(shape))

    def tensor_ref(self, tensor: TensorProto, what: str) -> TensorRef:
        name = ONNX_DTYPES.get(tensor.data_type)
        if name is None:
            raise UnsupportedCheckpointError(
                f"{what} has ONNX data type {tensor.data_type}, not supported"
            )
        dtype = DTYPES[name]
        shape = tuple(tensor.dims)
        if min(shape, default=0) < 0:
            raise CheckpointError(f"{what} has a negative dimension")
        nbytes = checked_numel(shape) * dtype.itemsize
        if tensor.data_location == EXTERNAL:
            source: ByteSource = self._external(tensor, nbytes, what)
        else:
            source = InModel(tensor, dtype, nbytes, what)
        return TensorRef(dtype, shape, source)

    def _external(self, tensor: TensorProto, nbytes: int, what: str) -> FileRegion:
        info = {text(entry.key): text(entry.value) for entry in tensor.external_data}
        location = info.get("location", "")
        path = within(self.folder, location)
        if path is None:
            raise _outside(location, what)
        try:
            offset, length = int(info.get("offset", "0")), int(info.get("length", str(nbytes)))
        except ValueError:
            raise CheckpointError(
                f"{what}: external data offset or length is not a number"
            ) from None
        file = self._files.get(path)
        if file is None:
            try:
                file = self._files[path] = open_bytes(path)
            except (OSError, CheckpointError) as err:
                reason = err.strerror if isinstance(err, OSError) else None
                raise CheckpointError(
                    f"{what}: external data file {printable(location, 80)} cannot be read: "
                    f"{reason or err}"
                ) from None
        if offset < 0 or length != nbytes or offset + length > file.size:
            raise CheckpointError(
                f"{what}: external data bytes {offset}..{offset + length} do not hold its "
                f"{nbytes} bytes in {printable(location, 80)} ({file.size} bytes)"
            )
        return FileRegion(file, offset, length)


def external_path(folder: Path, location: str, what: str) -> Path:
    """A side file named by a tensor, refused unless it lies inside the model's folder."""
    inside = within(folder, location)
    if inside is None:
        raise _outside(location, what)
    return inside


def _outside(location: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{what}: external data location {printable(location, 80)!r} is not a file "
        "inside the model's folder"
    )


@dataclass(frozen=True)
class InModel:
    """The bytes of a tensor stored inside the model, taken from the parsed protobuf only
    when read (a folded model lists every initializer and reads none)."""

    tensor: TensorProto
    dtype: DType
    size: int  # what the tensor's shape needs
    what: str

    @property
    def file_offset(self) -> int | None:
        return None

    def read(self, start: int, length: int) -> bytes:
        if self.tensor.HasField("raw_data"):
            data = self.tensor.raw_data
        else:
            data = _typed_values(self.tensor, self.dtype)
        if len(data) != self.size:
            raise CheckpointError(
                f"{self.what}: its shape needs {self.size} bytes of {self.dtype.name}, "
                f"the file holds {len(data)}"
            )
        return MemoryRegion(data).read(start, length)


def _in_memory(values: np.ndarray, dtype: DType) -> TensorRef:
    return TensorRef(dtype, values.shape, MemoryRegion(encode(values.reshape(-1), dtype)))


def _typed_values(tensor: TensorProto, dtype: DType) -> bytes:
    field = TYPED_FIELDS.get(dtype.name, "int32_data")
    bits = "<u2" if dtype.name == "float16" else dtype.numpy  # float16 comes as its bits
    return np.asarray(getattr(tensor, field)).astype(bits).tobytes()
