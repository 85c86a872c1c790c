"""Read many lazy tensors at once, for models of thousands of layers.

Read one by one, every tensor costs a system call, a decode and a few Python objects: a
model of 10,000 BatchNorm layers has 50,000 tensors. Here the contiguous tensors stored
raw in a file (`FileRegion`s, and `LazyRegion`s once placed) are read together, per file
and dtype: their byte ranges, checked against their regions as `TensorRef.read` checks
them, are merged into runs of nearby bytes, each run is read with one call, and the
tensors' bytes are gathered with one numpy index and decoded once. Any other tensor (a
strided view, a decompressed or decoded member) is read on its own.

A remote file is told beforehand what will be read (`prefetch`), so that it fetches every
quantity of every layer in a few parallel requests rather than a run at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from bnstat.dtypes import decode
from bnstat.errors import CheckpointError
from bnstat.tensor_ref import FileRegion, LazyRegion, RandomAccess, TensorRef

GAP = 4096  # bytes between two ranges of one file read in one call rather than two


def read_flat(refs: Sequence[TensorRef]) -> np.ndarray:
    """Every tensor's values in float64, flattened and back to back, in the given order."""
    sizes = [ref.numel for ref in refs]
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    out = np.empty(int(starts[-1]), dtype=np.float64)
    groups: dict[tuple[int, str, bool], _Group] = {}
    for i, (ref, size) in enumerate(zip(refs, sizes, strict=True)):
        source = ref.source
        if isinstance(source, LazyRegion):
            source = source.region()
        if isinstance(source, FileRegion) and _contiguous(ref, size) and ref.dtype.numpy:
            key = (id(source.file), ref.dtype.name, ref.big_endian)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(ref, source.file)
            group.add(i, size, ref.offset, source)
        else:
            out[starts[i] : starts[i + 1]] = ref.read().reshape(-1)
    for group in groups.values():
        indices = np.array(group.indices, dtype=np.int64)
        counts = np.array(group.sizes, dtype=np.int64)
        out[destinations(starts[indices], counts)] = group.values(counts)
    return out


def prefetch(refs: Iterable[TensorRef]) -> None:
    """Tell each file the spans these tensors will read (`RandomAccess.prefetch`)."""
    spans: dict[int, tuple[RandomAccess, list[tuple[int, int]]]] = {}
    for ref in refs:
        source = ref.source
        if isinstance(source, LazyRegion):
            file, span = source.file, (source.near, source.reach)
        elif isinstance(source, FileRegion):
            start, length = ref.byte_span()
            file, span = source.file, (source.offset + start, source.offset + start + length)
        else:
            continue
        spans.setdefault(id(file), (file, []))[1].append(span)
    for file, wanted in spans.values():
        file.prefetch(wanted)


def _contiguous(ref: TensorRef, numel: int) -> bool:
    """`ref.is_contiguous`, with the usual cases (1-D, one element) first."""
    if ref.strides is None or numel <= 1 or ref.strides == (1,):
        return True
    return ref.is_contiguous


def destinations(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions `starts[i]`, `starts[i] + 1`, ..., for `counts[i]` elements each."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)


class _Group:
    """Contiguous tensors of one dtype stored raw in one file."""

    def __init__(self, first: TensorRef, file: RandomAccess) -> None:
        self.dtype, self.big_endian, self.file = first.dtype, first.big_endian, file
        self.indices: list[int] = []
        self.sizes: list[int] = []
        self.offsets: list[int] = []  # in elements, into each region
        self.regions: list[tuple[int, int]] = []  # (offset in the file, size)

    def add(self, index: int, size: int, offset: int, region: FileRegion) -> None:
        self.indices.append(index)
        self.sizes.append(size)
        self.offsets.append(offset)
        self.regions.append((region.offset, region.size))

    def values(self, counts: np.ndarray) -> np.ndarray:
        """The tensors' values back to back, bounds-checked as `TensorRef.read` does."""
        itemsize = self.dtype.itemsize
        lengths = counts * itemsize
        inner = np.array(self.offsets, dtype=np.int64) * itemsize
        placed, region = np.array(self.regions, dtype=np.int64).reshape(-1, 2).T
        past = np.flatnonzero(inner + lengths > region)
        if len(past):
            i = int(past[0])
            raise CheckpointError(
                f"a tensor reads bytes {inner[i]}..{inner[i] + lengths[i]} of a storage of "
                f"{region[i]} bytes"
            )
        raw = _gather(self.file, placed + inner, lengths)
        try:
            values = decode(raw, self.dtype, self.big_endian)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        return values.astype(np.float64)


def _gather(file: RandomAccess, placed: np.ndarray, lengths: np.ndarray) -> bytes:
    """The bytes of every range, in order: nearby ranges are read in one call."""
    order = np.argsort(placed, kind="stable")
    start, end = placed[order], placed[order] + lengths[order]
    reach = np.maximum.accumulate(end)
    opens = np.ones(len(start), dtype=bool)
    opens[1:] = start[1:] > reach[:-1] + GAP
    run_starts = start[opens]
    run_ends = np.maximum.reduceat(end, np.flatnonzero(opens))
    runs = zip(run_starts.tolist(), run_ends.tolist(), strict=True)
    chunks = [file.pread(a, b - a) for a, b in runs]
    base = np.concatenate(([0], np.cumsum(run_ends - run_starts)))[:-1]
    run = np.cumsum(opens) - 1
    within = np.empty_like(start)
    within[order] = base[run] + start - run_starts[run]
    index = destinations(within, lengths)
    gathered: bytes = np.frombuffer(b"".join(chunks), dtype=np.uint8)[index].tobytes()
    return gathered
