"""safetensors files, from the header alone.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every
tensor's dtype, shape and byte range, then the data. The header is validated the way the
reference implementation does (ranges inside the data, sizes that match the shapes, no
overlaps), and a tensor's bytes are read only when asked for. Shards of a sharded
checkpoint are read by `shards`, through their index.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from bnstat.dtypes import DTYPES, OPAQUE_ITEMSIZES, SAFETENSORS_DTYPES, DType, opaque_dtype
from bnstat.errors import CheckpointError
from bnstat.location import Location, open_bytes
from bnstat.readers.base import CheckpointFormat, RawCheckpoint, parse_json
from bnstat.tensor_ref import MAX_NUMEL, FileRegion, RandomAccess, TensorRef, checked_numel

MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit


def _dtype(code: Any, name: str) -> DType:
    if code in SAFETENSORS_DTYPES:
        return DTYPES[SAFETENSORS_DTYPES[code]]
    if code in OPAQUE_ITEMSIZES:
        return opaque_dtype(code, OPAQUE_ITEMSIZES[code])
    raise CheckpointError(f"tensor {_brief(name)} has an unknown dtype {str(code)[:20]!r}")


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key that puts `layer2` before `layer10`: the header's order is not the model's."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


def _brief(name: str) -> str:
    return repr(name) if len(name) <= 80 else repr(name[:80]) + "..."


def _entry(info: Any, name: str, data_start: int, data_size: int, file: RandomAccess) -> TensorRef:
    if not isinstance(info, dict):
        raise CheckpointError(f"header entry {_brief(name)} is not an object")
    dtype = _dtype(info.get("dtype"), name)
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < MAX_NUMEL for d in shape):
        raise CheckpointError(f"tensor {_brief(name)} has an invalid shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise CheckpointError(
            f"tensor {_brief(name)} has byte range {str(offsets)[:60]} outside the "
            f"{data_size}-byte data section"
        )
    begin, end = offsets
    try:
        needed = checked_numel(shape) * dtype.itemsize
    except CheckpointError as err:
        raise CheckpointError(f"tensor {_brief(name)}: {err}") from None
    if needed != end - begin:
        raise CheckpointError(
            f"tensor {_brief(name)}: shape {str(shape)[:60]} of {dtype.name} needs "
            f"{needed} bytes but its range holds {end - begin}"
        )
    return TensorRef(dtype, tuple(shape), FileRegion(file, data_start + begin, end - begin))


def _check_no_overlap(tensors: dict[str, TensorRef]) -> None:
    spans = sorted(
        (t.source.offset, t.source.offset + t.source.size, n)
        for n, t in tensors.items()
        if isinstance(t.source, FileRegion) and t.source.size
    )
    for (_, end, first), (start, _, second) in pairwise(spans):
        if start < end:
            raise CheckpointError(
                f"tensors {_brief(first)} and {_brief(second)} overlap in the file"
            )


def parse_header(file: RandomAccess) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """Validate a safetensors header; return lazy tensors and the `__metadata__` strings."""
    if file.size < 8:
        raise CheckpointError("file too short for a safetensors header")
    length = int.from_bytes(file.pread(0, 8), "little")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(f"safetensors header claims {length} bytes, over the 100 MB limit")
    if length > file.size - 8:
        raise CheckpointError(f"safetensors header claims {length} bytes but the file is shorter")
    header = parse_json(file.pread(8, length), "safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError("safetensors __metadata__ is not an object")
    data_start = 8 + length
    tensors = {
        name: _entry(header[name], name, data_start, file.size - data_start, file)
        for name in sorted(header, key=natural_key)
    }
    _check_no_overlap(tensors)
    return tensors, metadata


def read_safetensors(path: Location) -> RawCheckpoint:
    """Read one safetensors file: a flat mapping of names to lazy tensors."""
    file = open_bytes(path)
    try:
        tensors, _ = parse_header(file)
    except BaseException:
        file.close()
        raise
    return RawCheckpoint(path, CheckpointFormat.SAFETENSORS, tensors, closers=[file.close])
