"""torch zip archives (`torch.save` since 1.6) and TorchScript archives, without torch.

Layout: `<root>/data.pkl` is the pickled object tree, `<root>/data/<key>` holds storage
`key`'s raw bytes, `<root>/byteorder` says their endianness. TorchScript archives add
`<root>/code/` and `<root>/constants.pkl`. Storage members are stored uncompressed by
torch, so a tensor's bytes are read straight from the file at a known offset; only the
members that BatchNorm tensors live in are ever read.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError
from bnstat.readers.base import CheckpointFormat, ModuleConstants, RawCheckpoint
from bnstat.readers.safe_pickle import load_pickle
from bnstat.readers.torchscript_code import class_constants
from bnstat.tensor_ref import ByteSource, FileRegion, MemoryRegion, OpenFile

MAX_PICKLE_BYTES = 256 * 2**20
MAX_CODE_BYTES = 64 * 2**20
_LOCAL_HEADER = struct.Struct("<4s5HLLLHH")


@dataclass(frozen=True, slots=True)
class ZipMemberRegion(FileRegion):
    """A stored (uncompressed) archive member: its bytes, name and local header position."""

    name: str
    header_offset: int


def archive_root(names: list[str]) -> str:
    """The archive folder, found the way torch finds it: from the first member's path."""
    if not names or "/" not in names[0]:
        raise CheckpointError("zip archive whose first member is not in a folder: not a torch file")
    return names[0].split("/", 1)[0]


def is_torchscript(names: set[str], root: str) -> bool:
    return f"{root}/constants.pkl" in names or any(n.startswith(f"{root}/code/") for n in names)


class _Members:
    """Byte sources for archive members: raw file regions, or decompressed when deflated."""

    def __init__(self, archive: zipfile.ZipFile, file: OpenFile) -> None:
        self._archive = archive
        self._file = file
        self._cache: dict[str, ByteSource] = {}

    def source(self, name: str, limit: int | None = None) -> ByteSource:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"archive member {name} is missing") from None
        if limit is not None and info.file_size > limit:
            raise CheckpointError(
                f"archive member {name} declares {info.file_size} bytes, over the "
                f"{limit} byte limit for it"
            )
        source = (
            self._raw(info) if info.compress_type == zipfile.ZIP_STORED else self._inflate(info)
        )
        self._cache[name] = source
        return source

    def _raw(self, info: zipfile.ZipInfo) -> ByteSource:
        header = self._file.pread(info.header_offset, _LOCAL_HEADER.size)
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            raise CheckpointError(f"archive member {info.filename} has a corrupt local header")
        name_len, extra_len = fields[-2], fields[-1]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + info.file_size > self._file.size:
            raise CheckpointError(
                f"archive member {info.filename} runs past the end of the file: truncated"
            )
        return ZipMemberRegion(self._file, start, info.file_size, info.filename, info.header_offset)

    def _inflate(self, info: zipfile.ZipInfo) -> ByteSource:
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"compressed archive member {info.filename} is too large")
        try:
            return MemoryRegion(self._archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise CheckpointError(f"archive member {info.filename}: {err}") from err


def _read_text(members: _Members, name: str, limit: int) -> str:
    source = members.source(name, limit)
    return source.read(0, source.size).decode("utf-8", errors="replace")


def _torchscript_classes(
    members: _Members, names: list[str], root: str
) -> dict[str, ModuleConstants]:
    found: dict[str, ModuleConstants] = {}
    budget = MAX_CODE_BYTES
    for name in names:
        if name.startswith(f"{root}/code/") and name.endswith(".py"):
            text = _read_text(members, name, budget)
            budget -= len(text)
            found.update(class_constants(name[len(root) + 1 :], text))
    return found


def read_torch_zip(path: Path) -> RawCheckpoint:
    """Read a torch zip or TorchScript archive; tensors stay on disk until read."""
    file = OpenFile(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        file.close()
        raise CheckpointError(f"corrupt zip archive: {err}") from err
    checkpoint = RawCheckpoint(path, CheckpointFormat.TORCH_ZIP, None)
    checkpoint.closers += [file.close, archive.close]
    try:
        _fill(checkpoint, archive, file)
    except BaseException:
        checkpoint.close()
        raise
    return checkpoint


def _fill(checkpoint: RawCheckpoint, archive: zipfile.ZipFile, file: OpenFile) -> None:
    names = archive.namelist()
    root = archive_root(names)
    name_set = set(names)
    if f"{root}/data.pkl" not in name_set:
        raise CheckpointError(f"zip archive without {root}/data.pkl: not a torch checkpoint")
    members = _Members(archive, file)
    byteorder = f"{root}/byteorder"
    big_endian = byteorder in name_set and _read_text(members, byteorder, 16).strip() == "big"

    def resolve(key: str, dtype: DType, numel: int) -> ByteSource:
        return members.source(f"{root}/data/{key}")

    pickle_source = members.source(f"{root}/data.pkl", MAX_PICKLE_BYTES)
    result = load_pickle(io.BytesIO(pickle_source.read(0, pickle_source.size)), resolve, big_endian)
    checkpoint.root = result.root
    checkpoint.refused_globals = tuple(result.refused_globals)
    if is_torchscript(name_set, root):
        checkpoint.format = CheckpointFormat.TORCHSCRIPT
        checkpoint.module_classes = _torchscript_classes(members, names, root)
