"""Legacy torch pickles (`torch.save(..., _use_new_zipfile_serialization=False)`, torch < 1.6).

The file is a run of pickles: a magic number, a protocol version, a system-info dict, the
object tree (storages appear as persistent ids) and the sorted list of storage keys; then,
for each key in that order, an 8-byte element count and the storage's raw bytes. The
object tree is rebuilt by the safe unpickler; storage offsets are found by walking the
8-byte headers (announced beforehand, so that a remote file fetches them together), so
only BatchNorm tensors are ever read. Each pickle is scanned before it
is loaded (which also finds where it ends), and anything after the last storage, where
torch writes nothing, is scanned for the globals a payload there would call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError
from bnstat.location import Location, open_bytes
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.readers.pickle_scan import PickleBudget, PickleScanner, scan_globals
from bnstat.readers.safe_pickle import (
    StorageResolver,
    filled,
    load_pickle,
    unlisted_globals,
)
from bnstat.readers.sniff import MAGIC_NUMBER
from bnstat.tensor_ref import BytesFile, ByteSource, FileRegion, RandomAccess

MAX_PICKLE_BYTES = 128 * 2**20
FIRST_READ = 4096  # then doubled: the small header pickles stay within a remote file's head


def _pickle_at(
    file: RandomAccess, start: int, budget: PickleBudget | None
) -> tuple[bytes, PickleScanner]:
    """The bytes of the pickle that starts at `start`, scanned: read in growing chunks.

    With a `budget`, the pickle is charged to it (memory and opcodes), else to its own.
    """
    available = min(file.size - start, MAX_PICKLE_BYTES)
    scanner = PickleScanner() if budget is None else PickleScanner(budget, budget.ops_left)
    data = b""
    try:
        while True:
            want = min(available, max(scanner.needed, 2 * len(data), FIRST_READ))
            if want <= len(data):
                if available < file.size - start:
                    raise CheckpointError(f"a pickle in the file is over {MAX_PICKLE_BYTES} bytes")
                raise CheckpointError("legacy torch stream ends inside a pickle: truncated")
            data += file.pread(start + len(data), want - len(data))
            if scanner.scan(data) is not None:
                return data, scanner
    finally:
        if budget is not None:
            budget.ops_left -= scanner.ops


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
        return self.region.file_offset if self.region else None

    def read(self, start: int, length: int) -> bytes:
        if self.region is None:
            raise CheckpointError("a storage of the legacy file has no data")
        return self.region.read(start, length)


def read_torch_legacy(path: Location) -> RawCheckpoint:
    """Read a legacy torch pickle; tensors stay on disk until read."""
    file = open_bytes(path)
    checkpoint = RawCheckpoint(path, CheckpointFormat.TORCH_LEGACY, None, closers=[file.close])
    return filled(checkpoint, lambda: _fill(checkpoint, file))


def read_legacy_stream(data: bytes, path: Location, budget: PickleBudget) -> RawCheckpoint:
    """A legacy torch stream held in memory (one nested in a plain pickle), its pickles
    charged to `budget`; its tensors read from `data`."""
    stream = RawCheckpoint(path, CheckpointFormat.TORCH_LEGACY, None)
    _fill(stream, BytesFile(data, f"{path.name} (a nested torch stream)"), budget)
    return stream


def _no_storage(key: str, dtype: DType, numel: int) -> ByteSource:
    raise CheckpointError("a legacy header pickle refers to a storage")


def _fill(
    checkpoint: RawCheckpoint, file: RandomAccess, budget: PickleBudget | None = None
) -> None:
    position = 0

    def next_pickle(resolve: StorageResolver, big_endian: bool = False) -> Any:
        nonlocal position
        data, scanner = _pickle_at(file, position, budget)
        result = load_pickle(data, resolve, big_endian, scanned=scanner)
        position += result.end
        checkpoint.refused_globals += tuple(result.refused_globals)
        return result.root

    header = [next_pickle(_no_storage) for _ in range(3)]
    if header[0] != MAGIC_NUMBER or not isinstance(header[2], dict):
        raise CheckpointError("not a legacy torch file: bad magic number or system info")
    little_endian = header[2].get("little_endian", True)
    storages: dict[str, _LegacyStorage] = {}

    def resolve(key: str, dtype: DType, numel: int) -> ByteSource:
        return storages.setdefault(key, _LegacyStorage(dtype, numel))

    checkpoint.root = next_pickle(resolve, big_endian=not little_endian)
    keys = next_pickle(_no_storage)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("legacy torch file has a corrupt storage key list")
    end = _place_storages(file, position, keys, storages, little_endian)
    if end < file.size:  # torch writes nothing here: report what a payload there names
        trailing = file.pread(end, min(file.size - end, MAX_PICKLE_BYTES))
        if budget is None:
            found = scan_globals(trailing)
        else:  # at most one opcode per byte, charged to the shared budget
            found = scan_globals(trailing, max_ops=max(0, budget.ops_left))
            budget.ops_left -= len(trailing)
        checkpoint.refused_globals += tuple(unlisted_globals(found))
    checkpoint.refused_globals = tuple(dict.fromkeys(checkpoint.refused_globals))


def _place_storages(
    file: RandomAccess,
    position: int,
    keys: list[str],
    storages: dict[str, _LegacyStorage],
    little_endian: bool,
) -> int:
    """Give each storage its file region; returns where the last storage record ends.

    The walk reads each record's 8-byte header in turn; where the pickle's element counts
    say the headers lie, they are announced first, for a remote file to fetch together."""
    byteorder: Literal["little", "big"] = "little" if little_endian else "big"
    file.prefetch(_headers_expected(position, keys, storages, file.size))
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
    return position


def _headers_expected(
    position: int, keys: list[str], storages: dict[str, _LegacyStorage], size: int
) -> list[tuple[int, int]]:
    """Where the storage headers lie if each agrees with the pickle's element count (past
    one that does not, the walk reads them where it finds them), up to the first unknown
    key or the end of the file."""
    spans = []
    for key in keys:
        storage = storages.get(key)
        if storage is None or position + 8 > size:
            break
        spans.append((position, position + 8))
        position += 8 + storage.numel * storage.dtype.itemsize
    return spans
