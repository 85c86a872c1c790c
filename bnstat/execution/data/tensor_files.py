"""Tensor files as samples: memory-mapped, and only the samples a pass uses are read.

A tensor file holds one tensor with its samples along the first dimension. Opening it
reads no data: a `.npy` is mapped by numpy, a `.safetensors` by safetensors, a `.pt`
written by `torch.save` by torch (`mmap=True`, with `weights_only`, so that nothing in
it runs; a legacy `.pt`, which cannot be mapped, is read whole). A pass copies out just
the samples it uses, so a 10 GB file costs what the chosen samples cost: the pages of a
`.npy` go back to the kernel after every read, those of the other kinds whenever they
reach `RENEW_BYTES` (the file is mapped anew) and when the file is closed at the end of
the pass; `mapped_bytes` counts what they hold meanwhile.

Values are taken as they are (tensor files are the user's preprocessed input): floats of
any width, and integers and booleans unscaled (the report warns); complex numbers are
refused, and a file holding Python objects or other non-tensors is not loaded.
"""

from __future__ import annotations

import math
import mmap
import pickle
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import safe_open

from bnstat.errors import DataError
from bnstat.execution.data.images import Skipped

Rows = range | np.ndarray  # sample indices in a file, ascending

NOT_LOADED = "holds objects other than tensors and was not loaded"
RENEW_BYTES = 64 * 2**20  # pages of a mapped file read before it is mapped anew


class TensorFile(ABC):
    """One opened tensor file: its samples' count, shape and type, read by rows."""

    def __init__(self, path: Path, dtype: torch.dtype, stored: str, shape: tuple[int, ...]):
        if dtype.is_complex:
            raise DataError(
                f"holds complex numbers ({stored}); a model takes real values: save the "
                "real part, or real and imaginary parts as channels"
            )
        if not shape:
            raise DataError(
                "holds a scalar; samples go along the first dimension (one is [1, ...])"
            )
        self.path, self.dtype, self.stored = path, dtype, stored
        self.count, self.sample_shape = shape[0], tuple(shape[1:])
        self.row_bytes = math.prod(self.sample_shape) * dtype.itemsize
        self.mapped_bytes = 0  # pages of the file this process holds now

    @property
    def integer(self) -> bool:
        return not self.dtype.is_floating_point

    def take(self, rows: Rows) -> torch.Tensor:
        """A copy of the samples `rows`, refused if any is not finite."""
        values = self._take(rows)
        bad = first_non_finite(values)
        if bad is not None:
            kind = "NaN" if bool(torch.isnan(values[bad]).any()) else "an infinite value"
            raise DataError(
                f"sample {int(rows[bad])} holds {kind}: non-finite input would poison every "
                "statistic; fix the step that wrote the data"
            )
        if self.mapped_bytes > RENEW_BYTES:
            self._renew()
        return values

    @abstractmethod
    def _take(self, rows: Rows) -> torch.Tensor: ...

    @abstractmethod
    def _renew(self) -> None:
        """Hand the pages read so far back to the kernel, where the file is mapped."""

    def close(self) -> None:
        self.mapped_bytes = 0


class NpyFile(TensorFile):
    def __init__(self, path: Path) -> None:
        if _npy_dtype(path).hasobject:
            raise Skipped("holds Python objects, not numbers, and was not loaded")
        self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        dtype = self.array.dtype
        if dtype.kind not in "biufc":
            raise DataError(f"holds {dtype} values, not numbers")
        native = dtype.newbyteorder("=")
        super().__init__(
            path, torch.from_numpy(np.empty(0, native)).dtype, str(native), self.array.shape
        )

    def _take(self, rows: Rows) -> torch.Tensor:
        if isinstance(rows, range) and rows.step == 1:
            part = self.array[rows.start : rows.stop]
        else:
            part = self.array[np.asarray(rows)]
        values = np.array(part, dtype=self.array.dtype.newbyteorder("="))
        if len(rows):
            self._release(int(rows[0]), int(rows[-1]) + 1)
        return torch.from_numpy(values)

    def _renew(self) -> None:
        """Nothing to do: the pages of every read went back at once (`_release`)."""

    def _release(self, first: int, stop: int) -> None:
        """Hand the pages of rows first..stop back to the kernel (the file still has them)."""
        mapping = getattr(self.array, "_mmap", None)
        if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        if not self.array.flags.c_contiguous:  # rows are spread over the whole mapping
            mapping.madvise(mmap.MADV_DONTNEED)
            return
        head = self.array.offset % mmap.ALLOCATIONGRANULARITY
        start, end = head + first * self.row_bytes, head + stop * self.row_bytes
        start -= start % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        mapping = getattr(self.array, "_mmap", None)
        del self.array
        if mapping is not None:
            mapping.close()
        super().close()


def _npy_dtype(path: Path) -> np.dtype[Any]:
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(handle)[2]
        return np.lib.format.read_array_header_2_0(handle)[2]


class SafetensorsFile(TensorFile):
    def __init__(self, path: Path) -> None:
        self._map(path)
        dtype = self.slice[0:0].dtype
        super().__init__(
            path, dtype, str(dtype).removeprefix("torch."), tuple(self.slice.get_shape())
        )

    def _map(self, path: Path) -> None:
        self.handle = cast(Any, safe_open(str(path), framework="pt"))  # untyped methods
        names = list(self.handle.keys())
        if len(names) != 1:
            raise DataError(f"holds {len(names)} tensors; a calibration file must hold exactly one")
        self.slice = self.handle.get_slice(names[0])

    def _renew(self) -> None:
        del self.slice, self.handle
        self._map(self.path)
        self.mapped_bytes = 0

    def _take(self, rows: Rows) -> torch.Tensor:
        parts = [self.slice[start:stop] for start, stop in _runs(rows)]
        self.mapped_bytes += len(rows) * self.row_bytes
        return torch.cat(parts) if len(parts) != 1 else parts[0]

    def close(self) -> None:
        del self.slice, self.handle
        super().close()


class TorchFile(TensorFile):
    def __init__(self, path: Path) -> None:
        self.mapped = zipfile.is_zipfile(path)  # torch.save's format since 1.6, else legacy
        self._map(path)
        stored = str(self.tensor.dtype).removeprefix("torch.")
        super().__init__(path, self.tensor.dtype, stored, tuple(self.tensor.shape))
        if not self.mapped:  # read whole: all of it is held
            self.mapped_bytes = self.count * self.row_bytes

    def _map(self, path: Path) -> None:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=self.mapped)
        except pickle.UnpicklingError as err:
            raise Skipped(NOT_LOADED) from err
        self.tensor = _only_tensor(content)

    def _take(self, rows: Rows) -> torch.Tensor:
        if isinstance(rows, range) and rows.step == 1:
            values = self.tensor[rows.start : rows.stop].clone()
        else:
            values = self.tensor[torch.as_tensor(np.asarray(rows))]
        if self.mapped:
            self.mapped_bytes += len(rows) * self.row_bytes
        return values

    def _renew(self) -> None:
        if self.mapped:
            del self.tensor
            self._map(self.path)
            self.mapped_bytes = 0

    def close(self) -> None:
        del self.tensor
        super().close()


def _only_tensor(content: Any) -> torch.Tensor:
    if isinstance(content, torch.Tensor):
        return content
    values = content.values() if isinstance(content, dict) else content
    tensors = (
        [v for v in values if isinstance(v, torch.Tensor)] if isinstance(values, Iterable) else []
    )
    if len(tensors) != 1:
        raise DataError(f"holds {len(tensors)} tensors; a calibration file must hold exactly one")
    return tensors[0]


def _runs(rows: Rows) -> list[tuple[int, int]]:
    """Ascending rows as (start, stop) runs of consecutive ones."""
    if isinstance(rows, range) and rows.step == 1:
        return [(rows.start, rows.stop)] if len(rows) else []
    indices = np.asarray(rows)
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(indices, breaks) if len(run)]


OPENERS: dict[str, Callable[[Path], TensorFile]] = {
    ".npy": NpyFile,
    ".safetensors": SafetensorsFile,
    ".pt": TorchFile,
    ".pth": TorchFile,
}


def open_tensor_file(path: Path) -> TensorFile:
    """The tensor file at `path`, opened without reading its samples."""
    return OPENERS[path.suffix.lower()](path)


def first_non_finite(values: torch.Tensor) -> int | None:
    """The position of the first sample holding NaN or infinity (None: all finite)."""
    if not values.is_floating_point() or not len(values):
        return None
    finite = torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    return None if bool(finite.all()) else int((~finite).nonzero()[0, 0])
