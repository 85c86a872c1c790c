"""Legacy torch pickles (`torch.save(..., _use_new_zipfile_serialization=False)`, torch < 1.6).

The file is a run of pickles: a magic number, a protocol version, a system-info dict, the
object tree (storages appear as persistent ids) and the sorted list of storage keys; then,
for each key in that order, an 8-byte element count and the storage's raw bytes. The
object tree is rebuilt by the safe unpickler; storage offsets are found by walking the
8-byte headers, so only BatchNorm tensors are ever read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.readers.safe_pickle import PickleResult, load_pickle
from bnstat.tensor_ref import ByteSource, FileRegion, OpenFile

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
MAX_PICKLE_BYTES = 256 * 2**20


def is_legacy_header(head: bytes) -> bool:
    """Whether the file starts with the pickled legacy magic number (protocol 2 LONG1)."""
    return (
        head[:1] == b"\x80"
        and head[2:4] == b"\x8a\x0a"
        and (head[4:14] == MAGIC_NUMBER.to_bytes(10, "little"))
    )


class _FileStream(io.RawIOBase):
    """The file from a position on, readable for at most `limit` bytes (bounds pickles)."""

    def __init__(self, file: OpenFile, limit: int) -> None:
        self._file, self._pos, self._end = file, 0, min(file.size, limit)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        self._pos = pos if whence == io.SEEK_SET else self._pos + pos
        return self._pos

    def readinto(self, buffer: Any) -> int:
        data = self._file.pread(self._pos, max(0, min(len(buffer), self._end - self._pos)))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


@dataclass
class _LegacyStorage:
    """A storage whose place in the file is known only once all pickles are read."""

    dtype: DType
    numel: int
    region: FileRegion | None = None

    @property
    def size(self) -> int:
        return self.region.size if self.region else 0

    @property
    def file_offset(self) -> int | None:
        return self.region.offset if self.region else None

    def read(self, start: int, length: int) -> bytes:
        if self.region is None:
            raise CheckpointError("a storage of the legacy file has no data")
        return self.region.read(start, length)


def read_torch_legacy(path: Path) -> RawCheckpoint:
    """Read a legacy torch pickle; tensors stay on disk until read."""
    file = OpenFile(path)
    checkpoint = RawCheckpoint(path, CheckpointFormat.TORCH_LEGACY, None, closers=[file.close])
    try:
        _fill(checkpoint, file)
    except BaseException:
        checkpoint.close()
        raise
    return checkpoint


def _no_storage(key: str, dtype: DType, numel: int) -> ByteSource:
    raise CheckpointError("a legacy header pickle refers to a storage")


def _fill(checkpoint: RawCheckpoint, file: OpenFile) -> None:
    stream = io.BufferedReader(_FileStream(file, MAX_PICKLE_BYTES))
    header = [load_pickle(stream, _no_storage).root for _ in range(3)]
    if header[0] != MAGIC_NUMBER or not isinstance(header[2], dict):
        raise CheckpointError("not a legacy torch file: bad magic number or system info")
    little_endian = header[2].get("little_endian", True)
    storages: dict[str, _LegacyStorage] = {}

    def resolve(key: str, dtype: DType, numel: int) -> ByteSource:
        return storages.setdefault(key, _LegacyStorage(dtype, numel))

    result: PickleResult = load_pickle(stream, resolve, big_endian=not little_endian)
    keys = load_pickle(stream, _no_storage).root
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("legacy torch file has a corrupt storage key list")
    _place_storages(file, stream.tell(), keys, storages, little_endian)
    checkpoint.root = result.root
    checkpoint.refused_globals = tuple(result.refused_globals)


def _place_storages(
    file: OpenFile,
    position: int,
    keys: list[str],
    storages: dict[str, _LegacyStorage],
    little_endian: bool,
) -> None:
    """Walk the storage records after the pickles and give each storage its file region."""
    byteorder: Literal["little", "big"] = "little" if little_endian else "big"
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise CheckpointError(f"legacy torch file lists an unknown storage {key!r}")
        numel = int.from_bytes(file.pread(position, 8), byteorder, signed=True)
        size = numel * storage.dtype.itemsize
        if numel < 0 or position + 8 + size > file.size:
            raise CheckpointError(f"storage {key} runs past the end of the file: truncated")
        storage.region = FileRegion(file, position + 8, size)
        position += 8 + size
