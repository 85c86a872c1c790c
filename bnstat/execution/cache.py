"""The values a segmented sweep keeps between segments: in memory up to a budget, then on disk.

A segment's outputs are cached per batch until the last segment that reads them has run
(`schedule.Plan.release`). Tensors are kept in host memory while the total, with what
`held_elsewhere` reports (the decoded calibration data), stays within `budget` bytes;
beyond it each new tensor is appended to a file of its value in a temporary folder and
read back when needed, so memory stays bounded whatever the size of the calibration set.
The folder is removed when the cache is closed, on success, on an error, on Ctrl-C and
(inside `termination.sigterm_raises`) on SIGTERM; it is locked while in use
(`leftovers`), so that the next run removes it after a SIGKILL. A write that fails (a
full disk) is an error that says so (`spill_errors`).

Pinned values (changed in place by a later segment) always stay in memory, as the very
objects the segments produced, so that the change reaches every later reader. Values that
are not tensors (sizes, tuples) are small and stay in memory too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from io import BufferedRandom
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnstat.execution.spill_errors import spill_failed
from bnstat.leftovers import Held, new_folder
from bnstat.report.recalibration import CacheUse


@dataclass(frozen=True)
class _OnDisk:
    offset: int
    size: int
    dtype: torch.dtype
    shape: torch.Size


def _nbytes(item: Any) -> int:
    if isinstance(item, torch.Tensor):
        return item.element_size() * item.nelement()
    if isinstance(item, tuple | list):
        return sum(_nbytes(part) for part in item)
    if isinstance(item, dict):
        return sum(_nbytes(part) for part in item.values())
    return 0


class ActivationCache:
    """Per (value, batch) items; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        budget: int,
        pinned: frozenset[int] = frozenset(),
        held_elsewhere: Callable[[], int] = lambda: 0,
    ) -> None:
        self.budget = max(0, budget)
        self.pinned = pinned
        self._elsewhere = held_elsewhere
        self._items: dict[tuple[int, int], Any] = {}
        self._files: dict[int, BufferedRandom] = {}
        self._folder: Path | None = None
        self._lock: Held | None = None  # tells later runs the folder is in use
        self._in_memory = self._on_disk = self._peak = self._spilled = 0

    def __enter__(self) -> ActivationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def use(self) -> CacheUse:
        return CacheUse(self._peak, self._spilled, self.budget)

    def put(self, value: int, batch: int, item: Any) -> None:
        size = _nbytes(item)
        spill = (
            isinstance(item, torch.Tensor)
            and value not in self.pinned
            and self._in_memory + size + self._elsewhere() > self.budget
        )
        if spill:
            self._items[value, batch] = self._write(value, item)
            self._on_disk += size
            self._spilled += size
        else:
            if isinstance(item, torch.Tensor) and value not in self.pinned:
                item = item.to("cpu")
            self._items[value, batch] = item
            self._in_memory += size
        self._peak = max(self._peak, self._in_memory + self._on_disk)

    def get(self, value: int, batch: int) -> Any:
        item = self._items[value, batch]
        return self._read(value, item) if isinstance(item, _OnDisk) else item

    def release(self, values: tuple[int, ...], batches: int) -> None:
        """Forget `values` for every batch, and delete their files."""
        for value in values:
            for batch in range(batches):
                item = self._items.pop((value, batch), None)
                if isinstance(item, _OnDisk):
                    self._on_disk -= item.size
                elif item is not None:
                    self._in_memory -= _nbytes(item)
            handle = self._files.pop(value, None)
            if handle is not None:
                handle.close()
                Path(handle.name).unlink(missing_ok=True)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self._items.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _write(self, value: int, tensor: torch.Tensor) -> _OnDisk:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        try:
            handle = self._files.get(value)
            if handle is None:
                if self._folder is None:
                    self._folder, self._lock = new_folder()
                handle = self._files[value] = open(self._folder / f"{value}.bin", "w+b")  # noqa: SIM115
            handle.seek(0, 2)
            offset = handle.tell()
            handle.write(flat.numpy().data)
            handle.flush()
        except OSError as err:  # a full temporary folder, say: what to do about it
            raise spill_failed(err, self._folder) from err
        return _OnDisk(offset, flat.numel(), tensor.dtype, tensor.shape)

    def _read(self, value: int, where: _OnDisk) -> torch.Tensor:
        handle = self._files[value]
        buffer = np.empty(where.size, dtype=np.uint8)
        handle.seek(where.offset)
        handle.readinto(buffer.data)
        return torch.from_numpy(buffer).view(where.dtype).reshape(where.shape)
