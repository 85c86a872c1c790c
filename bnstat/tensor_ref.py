"""Lazy tensors: where a tensor's bytes live, read only when a BatchNorm rule needs them.

Readers describe every tensor in a checkpoint with a `TensorRef` (type, shape, strides and
a `ByteSource` for its storage) without touching the tensor data, so that inspecting a
multi-gigabyte checkpoint costs what its BatchNorm buffers cost. Every read is bounds
checked against the storage, so a hostile header cannot make bnstat read past a region,
and a view that shows the same stored elements many times over (stride 0, as `expand()`
makes) is expanded only up to a bound, so a tiny file cannot ask for gigabytes.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bnstat.dtypes import DType, decode
from bnstat.errors import CheckpointError

MAX_NUMEL = 2**63  # torch sizes are int64
MAX_EXPANDED = 2**20  # elements a view may show beyond those it stores


class ByteSource(Protocol):
    """A region of bytes holding one storage (or one tensor)."""

    @property
    def size(self) -> int: ...

    @property
    def file_offset(self) -> int | None:
        """Absolute position of the region in its file, when its bytes are stored raw."""

    def read(self, start: int, length: int) -> bytes: ...


class RandomAccess(Protocol):
    """Bytes that can be read at any offset: an open file, a stream held in memory, or a
    remote file (`bnstat.remote.file`)."""

    size: int

    def pread(self, offset: int, length: int) -> bytes: ...

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """(start, end) spans about to be read: a remote file fetches them together now;
        bytes on disk or in memory need no such notice."""


def past_end(name: str, offset: int, length: int, size: int) -> CheckpointError:
    return CheckpointError(
        f"{name}: data at bytes {offset}..{offset + length} lies past the end "
        f"of the file ({size} bytes); the file is truncated or corrupt"
    )


class OpenFile:
    """One read-only descriptor shared by every region of a checkpoint file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.size = os.fstat(self._fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise past_end(self.path.name, offset, length, self.size)
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise CheckpointError(f"{self.path.name}: short read at byte {offset}")
        return data

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """The page cache reads ahead already."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BytesFile:
    """A file's worth of bytes held in memory (a torch stream nested in a pickle)."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name, self.size = data, name, len(data)

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise past_end(self.name, offset, length, self.size)
        return self.data[offset : offset + length]

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """Already in memory."""


@dataclass(frozen=True, slots=True)
class FileRegion:
    """Raw bytes at a fixed place in an open file (or in bytes read as one)."""

    file: RandomAccess
    offset: int
    size: int

    @property
    def file_offset(self) -> int | None:
        return self.offset if isinstance(self.file, OpenFile) else None

    def read(self, start: int, length: int) -> bytes:
        _check_span(start, length, self.size)
        return self.file.pread(self.offset + start, length)


class LazyRegion(ABC):
    """Raw bytes in a file whose exact place is learnt by a small read when they are first
    needed (a zip member behind its local header): naming every storage of a checkpoint
    then costs no read, and a remote reader can fetch the header and the bytes together.

    `near` .. `reach` is the span of the file that holds the bytes and what locates them.
    """

    def __init__(self, file: RandomAccess, size: int, near: int, reach: int) -> None:
        self.file, self.size, self.near, self.reach = file, size, near, reach
        self._offset: int | None = None

    @abstractmethod
    def locate(self) -> int:
        """Where the bytes start in the file (read when first asked)."""

    @property
    def offset(self) -> int:
        if self._offset is None:
            self._offset = self.locate()
        return self._offset

    def region(self) -> FileRegion:
        return FileRegion(self.file, self.offset, self.size)

    @property
    def file_offset(self) -> int | None:
        return self.region().file_offset

    def read(self, start: int, length: int) -> bytes:
        return self.region().read(start, length)


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """Bytes already in memory (a decompressed zip member, a decoded constant)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def file_offset(self) -> int | None:
        return None

    def read(self, start: int, length: int) -> bytes:
        _check_span(start, length, self.size)
        return self.data[start : start + length]


def _check_span(start: int, length: int, size: int) -> None:
    if start < 0 or length < 0 or start + length > size:
        raise CheckpointError(
            f"a tensor reads bytes {start}..{start + length} of a storage of {size} bytes"
        )


def checked_numel(shape: tuple[int, ...] | list[int]) -> int:
    """The element count of a shape; readers call it on every shape a file gives.

    A shape whose non-zero sizes multiply to 2**63 or more is refused: no tensor has one,
    and numbers that large would make every later size computation slow.
    """
    numel, empty = 1, False
    for dim in shape:
        if dim == 0:
            empty = True
            continue
        numel *= dim
        if numel >= MAX_NUMEL:
            raise CheckpointError(f"a tensor shape with over 2**63 elements: {_brief(shape)}")
    return 0 if empty else numel


def _brief(shape: tuple[int, ...] | list[int]) -> str:
    text = str(list(shape[:8]))
    return text[:-1] + ", ...]" if len(shape) > 8 else text


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor described, not loaded: its values are read on `read()`."""

    dtype: DType
    shape: tuple[int, ...]
    source: ByteSource
    offset: int = 0  # in elements, into the source
    strides: tuple[int, ...] | None = None  # in elements; None means contiguous
    big_endian: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_contiguous(self) -> bool:
        return (
            self.strides is None
            or self.numel <= 1
            or (self.strides == contiguous_strides(self.shape))
        )

    def byte_span(self) -> tuple[int, int]:
        """(start, length) in the source of the elements this tensor can touch."""
        if self.numel == 0:
            return self.offset * self.dtype.itemsize, 0
        if self.is_contiguous:
            extent = self.numel
        else:
            assert self.strides is not None
            extent = 1 + sum((d - 1) * s for d, s in zip(self.shape, self.strides, strict=True))
        return self.offset * self.dtype.itemsize, extent * self.dtype.itemsize

    def read(self) -> np.ndarray:
        """The tensor's values as a numpy array of its shape (bfloat16 widened to float32)."""
        start, length = self.byte_span()
        stored = length // self.dtype.itemsize
        if self.numel > stored + MAX_EXPANDED:
            raise CheckpointError(
                f"a tensor of shape {_brief(self.shape)} views only {stored} stored elements: "
                f"refusing to expand it to {self.numel}"
            )
        try:
            flat = decode(self.source.read(start, length), self.dtype, self.big_endian)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if self.is_contiguous:
            return flat.reshape(self.shape)
        assert self.strides is not None
        byte_strides = tuple(s * flat.itemsize for s in self.strides)
        return np.lib.stride_tricks.as_strided(flat, self.shape, byte_strides).copy()
