"""Element types of stored tensors and their decoding to numpy without torch.

Checkpoints name types three ways (torch storage classes, torch dtypes, safetensors codes);
all of them map to one canonical name here. numpy has no bfloat16, so bfloat16 bits are
widened to float32 by shifting them into the high half of a 32-bit word, which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """A stored element type: canonical name, bytes per element, numpy reading type."""

    name: str
    itemsize: int
    numpy: str  # numpy type string (little-endian); bfloat16 is read as uint16 then widened

    @property
    def is_float(self) -> bool:
        return self.name.startswith(("float", "bfloat"))


_ALL = (
    DType("float64", 8, "<f8"),
    DType("float32", 4, "<f4"),
    DType("float16", 2, "<f2"),
    DType("bfloat16", 2, "<u2"),
    DType("int64", 8, "<i8"),
    DType("int32", 4, "<i4"),
    DType("int16", 2, "<i2"),
    DType("int8", 1, "<i1"),
    DType("uint8", 1, "<u1"),
    DType("uint16", 2, "<u2"),
    DType("uint32", 4, "<u4"),
    DType("uint64", 8, "<u8"),
    DType("bool", 1, "<u1"),
)
DTYPES: dict[str, DType] = {d.name: d for d in _ALL}

# torch storage class names (as pickled by torch.save) -> canonical dtype name.
TORCH_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}

# torch dtype attribute names (torch.float32, torch.half, ...) -> canonical dtype name.
TORCH_DTYPE_NAMES: dict[str, str] = {
    "float64": "float64", "double": "float64",
    "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
    "uint64": "uint64", "bool": "bool",
}  # fmt: skip

# safetensors header codes -> canonical dtype name.
SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}  # fmt: skip

# Types whose size is known but that bnstat does not decode (float8 variants, complex, ...).
OPAQUE_ITEMSIZES: dict[str, int] = {
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F6_E2M3": 1, "F6_E3M2": 1, "F4": 1,
    "C64": 8, "C128": 16,
    "Float8_e4m3fnStorage": 1, "Float8_e5m2Storage": 1,
    "Float8_e4m3fnuzStorage": 1, "Float8_e5m2fnuzStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip


def opaque_dtype(code: str, itemsize: int) -> DType:
    """A type bnstat can measure but not decode; reading it is an error for BN tensors."""
    return DType(code, itemsize, "")


def decode(raw: bytes | memoryview, dtype: DType, big_endian: bool = False) -> np.ndarray:
    """Turn raw little- (or big-) endian bytes into a numpy array of the stored values.

    float16 stays float16 and bfloat16 becomes float32 (both exact); callers widen to
    float64 for statistics.
    """
    if not dtype.numpy:
        raise ValueError(f"tensors of type {dtype.name} cannot be decoded")
    np_type = np.dtype(dtype.numpy)
    if big_endian:
        np_type = np_type.newbyteorder(">")
    values = np.frombuffer(raw, dtype=np_type)
    if dtype.name == "bfloat16":
        widened: np.ndarray = (values.astype(np.uint32) << 16).view(np.float32)
        return widened
    if dtype.name == "bool":
        nonzero: np.ndarray = values != 0
        return nonzero
    return values


def encode(values: np.ndarray, dtype: DType, big_endian: bool = False) -> bytes:
    """Values as the raw bytes of a stored tensor of `dtype` (inverse of `decode`).

    Floats are rounded to nearest (bfloat16: to nearest even, from float32); a finite
    value that would overflow to infinity is an error, as is an integer out of range.
    """
    if not dtype.numpy:
        raise ValueError(f"tensors of type {dtype.name} cannot be written")
    if dtype.name == "bfloat16":
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        rounded[np.isnan(np.asarray(values, dtype=np.float32))] = 0x7FC0
        raw = rounded.astype("<u2")
    elif dtype.is_float:
        wide = np.asarray(values, dtype=np.float64)
        with np.errstate(over="ignore"):
            raw = wide.astype(dtype.numpy)
        if (np.isinf(raw) & np.isfinite(wide)).any():
            raise ValueError(f"value beyond the range of {dtype.name}")
    else:
        info = np.iinfo(np.dtype(dtype.numpy))
        rounded_int = np.rint(np.asarray(values, dtype=np.float64))
        if rounded_int.size and (rounded_int.min() < info.min or rounded_int.max() > info.max):
            raise ValueError(f"value out of range for {dtype.name}")
        raw = rounded_int.astype(dtype.numpy)
    if big_endian:
        raw = raw.astype(raw.dtype.newbyteorder(">"))
    return raw.tobytes()
