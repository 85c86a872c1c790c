"""torch zip archives (`torch.save` since 1.6) and TorchScript archives, without torch.

Layout: `<root>/data.pkl` is the pickled object tree, `<root>/data/<key>` holds storage
`key`'s raw bytes, `<root>/byteorder` says their endianness. TorchScript archives add
`<root>/code/` and `<root>/constants.pkl`. Storage members are stored uncompressed by
torch, so a tensor's bytes are read straight from the file at a known offset; only the
members that BatchNorm tensors live in are ever read. An archive someone recompressed
still reads, within a bound on what it may decompress.

Bytes torch never unpickles still get looked at: what follows the STOP of `data.pkl`
and any other `.pkl` member are scanned (never loaded) for the globals they name, so a
payload hidden there is reported like one in `data.pkl`.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError
from bnstat.location import Location, open_bytes
from bnstat.readers import pt2
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.readers.pickle_scan import scan_globals
from bnstat.readers.safe_pickle import Opaque, filled, load_pickle, unlisted_globals
from bnstat.readers.torchscript_code import class_constants
from bnstat.readers.torchscript_graph import layer_followers
from bnstat.tensor_ref import ByteSource, LazyRegion, MemoryRegion, RandomAccess

MAX_PICKLE_BYTES = 128 * 2**20
MAX_CODE_BYTES = 64 * 2**20
MAX_MEMBERS = 2**20  # a torch archive holds one member per storage, plus a few
MAX_SCANNED_BYTES = 64 * 2**20  # of pickle members scanned for globals, not loaded
MAX_INFLATED_BYTES = 256 * 2**20  # decompressed in all, for the rare compressed archive
_LOCAL_HEADER = struct.Struct("<4s5HLLLHH")
EXTRA_GUESS = 128  # local extra field bytes a remote read fetches with a member (torch: <= 84)


class ZipMemberRegion(LazyRegion):
    """A stored (uncompressed) archive member: its bytes, name and local header position.

    Its local header (whose extra field may differ from the central directory's) is read
    when the member is first read, so that naming every storage costs nothing; a remote
    file fetches the header with the bytes (up to EXTRA_GUESS bytes of extra field).
    """

    def __init__(self, file: RandomAccess, info: zipfile.ZipInfo) -> None:
        self.name, self.header_offset = info.filename, info.header_offset
        data = self.header_offset + _LOCAL_HEADER.size + len(info.orig_filename.encode())
        reach = data + EXTRA_GUESS + info.file_size
        super().__init__(file, info.file_size, self.header_offset, reach)

    def locate(self) -> int:
        header = self.file.pread(self.header_offset, _LOCAL_HEADER.size)
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            raise CheckpointError(f"archive member {self.name} has a corrupt local header")
        name_len, extra_len = fields[-2], fields[-1]
        start: int = self.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + self.size > self.file.size:
            raise CheckpointError(
                f"archive member {self.name} runs past the end of the file: truncated"
            )
        return start


class _Stream(io.RawIOBase):
    """A read-only file object over `RandomAccess`, for `zipfile` (local or remote alike)."""

    def __init__(self, file: RandomAccess) -> None:
        self._file, self._position = file, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._file.size}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._file.size - self._position))
        buffer[:count] = self._file.pread(self._position, count)
        self._position += count
        return count


def archive_root(names: list[str]) -> str:
    """The archive folder, found the way torch finds it: from the first member's path."""
    if not names or "/" not in names[0]:
        raise CheckpointError("zip archive whose first member is not in a folder: not a torch file")
    return names[0].split("/", 1)[0]


def is_torchscript(names: set[str], root: str) -> bool:
    return f"{root}/constants.pkl" in names or any(n.startswith(f"{root}/code/") for n in names)


class _Members:
    """Byte sources for archive members: raw file regions, or decompressed when deflated."""

    def __init__(self, archive: zipfile.ZipFile, file: RandomAccess) -> None:
        self._archive = archive
        self._file = file
        self._cache: dict[str, ByteSource] = {}
        self._inflated = 0

    def source(self, name: str, limit: int | None = None, cache: bool = True) -> ByteSource:
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
        if cache:
            self._cache[name] = source
        return source

    def _raw(self, info: zipfile.ZipInfo) -> ByteSource:
        return ZipMemberRegion(self._file, info)

    def _inflate(self, info: zipfile.ZipInfo) -> ByteSource:
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"compressed archive member {info.filename} is too large")
        return _Compressed(self, info)

    def inflate(self, info: zipfile.ZipInfo) -> bytes:
        """A compressed member's bytes, within what the archive may decompress in all."""
        self._inflated += info.file_size
        if self._inflated > MAX_INFLATED_BYTES:
            raise CheckpointError(
                f"archive member {info.filename}: decompressing it would take the archive "
                f"over {MAX_INFLATED_BYTES // 2**20} MiB of decompressed data"
            )
        try:
            return self._archive.read(info)
        except Exception as err:  # zlib, bz2 and lzma errors, unknown methods, encryption
            raise CheckpointError(
                f"archive member {info.filename}: cannot decompress: {type(err).__name__}: {err}"
            ) from err


class _Compressed:
    """A compressed archive member, decompressed when first read, not when named."""

    def __init__(self, members: _Members, info: zipfile.ZipInfo) -> None:
        self._members, self._info = members, info
        self._data: MemoryRegion | None = None

    @property
    def size(self) -> int:
        return self._info.file_size

    @property
    def file_offset(self) -> int | None:
        return None

    def read(self, start: int, length: int) -> bytes:
        if self._data is None:
            self._data = MemoryRegion(self._members.inflate(self._info))
            if self._data.size != self._info.file_size:
                raise CheckpointError(f"archive member {self._info.filename} has a wrong size")
        return self._data.read(start, length)


def _read_text(members: _Members, name: str, limit: int) -> str:
    source = members.source(name, limit)
    return source.read(0, source.size).decode("utf-8", errors="replace")


def _code(members: _Members, names: list[str], root: str) -> dict[str, str]:
    """A TorchScript archive's code members (`code/__torch__/...py`) as text."""
    found: dict[str, str] = {}
    budget = MAX_CODE_BYTES
    for name in names:
        if name.startswith(f"{root}/code/") and name.endswith(".py"):
            found[name[len(root) + 1 :]] = text = _read_text(members, name, budget)
            budget -= len(text)
    return found


def _fill_torchscript(
    checkpoint: RawCheckpoint, members: _Members, names: list[str], root: str
) -> None:
    """Module classes with their constants, and what follows each layer, from the code."""
    checkpoint.format = CheckpointFormat.TORCHSCRIPT
    code = _code(members, names, root)
    for member, text in code.items():
        checkpoint.module_classes.update(class_constants(member, text))
    if isinstance(checkpoint.root, Opaque):
        checkpoint.layer_modules = layer_followers(
            code, checkpoint.root.global_name, checkpoint.module_classes
        )


def _member_count(file: RandomAccess) -> int | None:
    """Entries the end-of-central-directory record declares, read before zipfile parses it."""
    tail_start = max(0, file.size - 65557)
    tail = file.pread(tail_start, file.size - tail_start)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return None  # zipfile says what is wrong
    count: int = struct.unpack_from("<H", tail, end + 10)[0]
    locator = tail.rfind(b"PK\x06\x07", 0, end)
    if count == 0xFFFF and locator >= 0 and locator + 20 <= len(tail):
        record = struct.unpack_from("<Q", tail, locator + 8)[0]
        if record + 40 <= file.size:
            count = struct.unpack("<Q", file.pread(record + 32, 8))[0]
    return count


def _other_pickles(members: _Members, names: list[str], root: str) -> list[tuple[str, str]]:
    """Globals named by `.pkl` members other than data.pkl (scanned, never loaded)."""
    found: list[tuple[str, str]] = []
    budget = MAX_SCANNED_BYTES
    for name in names:
        if not name.endswith(".pkl") or name == f"{root}/data.pkl":
            continue
        try:
            source = members.source(name, budget, cache=False)
            found += scan_globals(source.read(0, source.size))
            budget -= source.size
        except CheckpointError:
            continue  # unreadable or too large: torch would not load it either
    return found


def read_torch_zip(path: Location) -> RawCheckpoint:
    """Read a torch zip or TorchScript archive; tensors stay on disk until read."""
    file = open_bytes(path)
    try:
        count = _member_count(file)
        if count is not None and count > MAX_MEMBERS:
            raise CheckpointError(
                f"zip archive declares {count} members, over the limit of {MAX_MEMBERS}"
            )
        archive = zipfile.ZipFile(_Stream(file))
    except CheckpointError:
        file.close()
        raise
    except Exception as err:  # zipfile raises more than BadZipFile on a corrupt directory
        file.close()
        raise CheckpointError(f"corrupt zip archive: {type(err).__name__}: {err}") from err
    checkpoint = RawCheckpoint(path, CheckpointFormat.TORCH_ZIP, None)
    checkpoint.closers += [file.close, archive.close]
    return filled(checkpoint, lambda: _fill(checkpoint, archive, file))


def _fill_pt2(checkpoint: RawCheckpoint, members: _Members, names: set[str], root: str) -> None:
    """A torch.export archive: weights from its configs, eps and classes from its graph."""
    checkpoint.format = CheckpointFormat.PT2
    models = pt2.read_tensors(root, names, members.source)
    checkpoint.root = next(iter(models.values())) if len(models) == 1 else models
    checkpoint.layer_modules = pt2.layer_constants(root, names, members.source)


def _fill(checkpoint: RawCheckpoint, archive: zipfile.ZipFile, file: RandomAccess) -> None:
    names = archive.namelist()
    root = archive_root(names)
    name_set = set(names)
    members = _Members(archive, file)
    if pt2.is_pt2(name_set, root, lambda name: _read_text(members, name, 64)):
        _fill_pt2(checkpoint, members, name_set, root)
        return
    if f"{root}/data.pkl" not in name_set:
        checkpoint.refused_globals = tuple(unlisted_globals(_other_pickles(members, names, root)))
        raise CheckpointError(f"zip archive without {root}/data.pkl: not a torch checkpoint")
    byteorder = f"{root}/byteorder"
    big_endian = byteorder in name_set and _read_text(members, byteorder, 16).strip() == "big"

    def resolve(key: str, dtype: DType, numel: int) -> ByteSource:
        return members.source(f"{root}/data/{key}")

    pickle_source = members.source(f"{root}/data.pkl", MAX_PICKLE_BYTES)
    data = pickle_source.read(0, pickle_source.size)
    result = load_pickle(data, resolve, big_endian)
    checkpoint.root = result.root
    hidden = scan_globals(data[result.end :]) + _other_pickles(members, names, root)
    refused = result.refused_globals + unlisted_globals(hidden)
    checkpoint.refused_globals = tuple(dict.fromkeys(refused))
    if is_torchscript(name_set, root):
        _fill_torchscript(checkpoint, members, names, root)
