"""Write recalibrated statistics back, changing nothing else, never leaving a partial file.

Same format as the input (the usual case): the input is copied to a temporary file in
the target folder, the bytes of each BatchNorm buffer are overwritten in place with the
new values in the buffer's own dtype, zip CRCs of the touched archive members are fixed,
and the file is fsynced and renamed over the target. Every other byte, including key
names, nesting, metadata, TorchScript code and storage alignment, is the input's. When
the output's extension names the other format family (`.safetensors` against
`.pt`/`.pth`/`.bin`/`.ckpt`), the state dict is written anew in that format instead.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

from bnstat.atomic import atomic_output, copy_into
from bnstat.dtypes import encode
from bnstat.errors import ModelError
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.readers.torch_zip import ZipMemberRegion
from bnstat.stages.find_state_dicts import StateDict, find_state_dicts
from bnstat.writers.target import Patch, output_is_safetensors


def write_checkpoint(
    raw: RawCheckpoint, state: StateDict, patches: list[Patch], output: Path, in_place: bool = False
) -> None:
    """Write `raw` with `patches` applied to `output`, atomically (in place: same format)."""
    same_family = output_is_safetensors(output, raw) == (raw.format is CheckpointFormat.SAFETENSORS)
    if in_place or same_family:
        _patched_copy(raw, patches, output)
    else:
        from bnstat.writers.convert import write_converted  # needs torch

        write_converted(raw, state, patches, output)


def _encoded(patch: Patch) -> tuple[int, bytes]:
    tensor = patch.tensor
    offset = tensor.source.file_offset
    if offset is None or not tensor.is_contiguous:
        raise ModelError(
            f"{patch.key} is not stored as plain bytes (compressed or strided): "
            "write to a .safetensors output instead"
        )
    start, length = tensor.byte_span()
    try:
        data = encode(patch.values.reshape(-1), tensor.dtype, tensor.big_endian)
    except ValueError as err:
        raise ModelError(
            f"{patch.key}: the new statistics do not fit the file: {err}; "
            "write a float32 copy with --output NAME.safetensors"
        ) from err
    if len(data) != length:
        raise ModelError(f"{patch.key}: {len(data)} new bytes for a {length}-byte tensor")
    return offset + start, data


def _check_shared_storage(raw: RawCheckpoint, patches: list[Patch]) -> None:
    """A patched buffer must not share bytes with a tensor that is not being patched."""
    patched = {id(p.tensor) for p in patches}
    spans = {id(p.tensor.source): [] for p in patches}  # type: dict[int, list[tuple[int, int, str]]]
    for patch in patches:
        start, length = patch.tensor.byte_span()
        spans[id(patch.tensor.source)].append((start, start + length, patch.key))
    for state in find_state_dicts(raw):
        for key, tensor in state.tensors.items():
            if id(tensor) in patched or id(tensor.source) not in spans:
                continue
            start, length = tensor.byte_span()
            for low, high, name in spans[id(tensor.source)]:
                if start < high and low < start + length:
                    raise ModelError(
                        f"{name} shares its storage with {key}: refusing to change both"
                    )


def _patched_copy(raw: RawCheckpoint, patches: list[Patch], output: Path) -> None:
    _check_shared_storage(raw, patches)
    writes = [_encoded(patch) for patch in patches]
    members = {
        patch.tensor.source for patch in patches if isinstance(patch.tensor.source, ZipMemberRegion)
    }
    with atomic_output(output, like=raw.local_path) as temporary:
        copy_into(raw.local_path, temporary)
        with open(temporary, "r+b") as handle:
            for offset, data in writes:
                handle.seek(offset)
                handle.write(data)
            if members:
                _fix_crcs(handle, {m.name: m for m in members})


def _fix_crcs(handle, members: Mapping[str, ZipMemberRegion]) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the CRC-32 of changed zip members in local headers, descriptors and directory."""
    central = _central_crc_fields(handle)
    for name, member in members.items():
        handle.seek(member.offset)
        crc = struct.pack("<I", zlib.crc32(handle.read(member.size)) & 0xFFFFFFFF)
        handle.seek(member.header_offset + 6)
        flags = struct.unpack("<H", handle.read(2))[0]
        if flags & 0x08:  # the CRC is in a data descriptor after the data (signature optional)
            handle.seek(member.offset + member.size)
            signature = handle.read(4)
            handle.seek(member.offset + member.size + (4 if signature == b"PK\x07\x08" else 0))
        else:
            handle.seek(member.header_offset + 14)
        handle.write(crc)
        handle.seek(central[name])
        handle.write(crc)


def _central_crc_fields(handle) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """File offset of the CRC field of every central directory entry, by member name."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    tail_start = max(0, size - 65557)
    handle.seek(tail_start)
    tail = handle.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0:
        raise ModelError("the copied archive has no end-of-central-directory record")
    (entries,) = struct.unpack("<H", tail[end + 10 : end + 12])
    (directory,) = struct.unpack("<I", tail[end + 16 : end + 20])
    if directory == 0xFFFFFFFF or entries == 0xFFFF:  # zip64: the locator names the record
        locator = tail.rfind(b"PK\x06\x07", 0, end)
        handle.seek(struct.unpack("<Q", tail[locator + 8 : locator + 16])[0] + 48)
        directory = struct.unpack("<Q", handle.read(8))[0]
    fields: dict[str, int] = {}
    position = directory
    handle.seek(position)
    while (header := handle.read(46))[:4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack("<HHH", header[28:34])
        name = handle.read(name_length).decode("utf-8", errors="replace")
        fields[name] = position + 16
        position += 46 + name_length + extra_length + comment_length
        handle.seek(position)
    return fields
