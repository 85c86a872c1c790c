"""The values a segmented sweep keeps between segments: where the plan puts them, or within
a budget when there is no plan.

A segment's outputs are cached per batch until the last segment that reads them has run
(`schedule.Plan.release`). With a plan (`planning.CachePlan`), each value's batches go
where it says: the first ones in device memory, the next in host memory, the rest to a
file of the value in a temporary folder (a recomputed value never comes here). Without
one (data of unknown size), tensors stay in host memory while the total, with what
`held_elsewhere` reports, is within `budget` bytes, and go to disk beyond it.

Files are written by a background thread while the model computes, so the disk and the
model work at the same time; reads fetch the next batch of a value ahead of its use. A
segment's writes are all on disk before the next segment reads them (`flush`); a write
that fails (a full disk) is an error that says so (`spill_errors`). The folder is locked
while in use (`leftovers`), so that the next run removes it after a SIGKILL, and removed
when the cache is closed, on success, on an error, on Ctrl-C and, where the program turns
SIGTERM into an exception (the command line does, with `termination.sigterm_raises`; the
library installs no signal handler), on SIGTERM.

Pinned values (changed in place by a later segment) always stay in memory, as the very
objects the segments produced, so that the change reaches every later reader. Values that
are not tensors (sizes, tuples) are small and stay in memory too.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnstat.execution.batches import nbytes
from bnstat.execution.planning import Placement
from bnstat.execution.spill_errors import spill_failed
from bnstat.leftovers import Held, new_folder
from bnstat.report.recalibration import CacheUse

IN_FLIGHT = 512 * 2**20  # bytes queued for the writer before a put waits for it


@dataclass(frozen=True)
class _OnDisk:
    offset: int
    size: int
    dtype: torch.dtype
    shape: torch.Size


class _Spills:
    """One append-only file per value, written in the background, read with read-ahead."""

    def __init__(self, folder: Path | None) -> None:
        self._parent = folder
        self._folder: Path | None = None
        self._lock: Held | None = None  # tells later runs the folder is in use
        self._files: dict[int, int] = {}  # value -> descriptor
        self._ends: dict[int, int] = {}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="bnstat-spill")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="bnstat-read")
        self._pending: list[Future[None]] = []
        self._room = threading.Semaphore(IN_FLIGHT // 2**20)  # in MiB
        self._ahead: dict[tuple[int, int], Future[np.ndarray]] = {}
        self.written = self.read_bytes = 0

    def write(self, value: int, tensor: torch.Tensor) -> _OnDisk:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        fd = self._file(value)
        offset = self._ends[value]
        self._ends[value] = offset + flat.size
        megabytes = max(1, min(flat.size >> 20, IN_FLIGHT >> 20))
        for _ in range(megabytes):
            self._room.acquire()
        self._pending.append(self._writer.submit(self._pwrite, fd, flat, offset, megabytes))
        self.written += flat.size
        return _OnDisk(offset, flat.size, tensor.dtype, tensor.shape)

    def _pwrite(self, fd: int, data: np.ndarray, offset: int, megabytes: int) -> None:
        try:
            view = memoryview(data.data)
            while view:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done
        finally:
            for _ in range(megabytes):
                self._room.release()

    def flush(self) -> None:
        """Wait for every queued write; a failed one raises here, saying what to do."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
        except OSError as err:  # a full temporary folder, say
            raise spill_failed(err, self._folder) from err

    def read(self, value: int, batch: int, where: _OnDisk, next_batch: _OnDisk | None) -> Any:
        if self._pending:  # what is read must be written first
            self.flush()
        future = self._ahead.pop((value, batch), None)
        data = future.result() if future is not None else self._pread(value, where)
        if next_batch is not None and (value, batch + 1) not in self._ahead:
            self._ahead[value, batch + 1] = self._reader.submit(self._pread, value, next_batch)
        return torch.from_numpy(data).view(where.dtype).reshape(where.shape)

    def _pread(self, value: int, where: _OnDisk) -> np.ndarray:
        buffer = np.empty(where.size, dtype=np.uint8)
        view, offset = memoryview(buffer.data), where.offset
        while view:
            done = os.preadv(self._files[value], [view], offset)
            if done == 0:
                raise OSError(f"the cache file of value {value} ended early")
            view, offset = view[done:], offset + done
        self.read_bytes += where.size
        return buffer

    def forget(self, value: int) -> None:
        for key in [key for key in self._ahead if key[0] == value]:
            future = self._ahead.pop(key)
            if not future.cancel():
                wait([future])  # a read under way finishes before its file is closed
        fd = self._files.pop(value, None)
        if fd is not None:
            os.close(fd)
            assert self._folder is not None
            (self._folder / f"{value}.bin").unlink(missing_ok=True)

    def close(self) -> None:
        for future in self._ahead.values():
            future.cancel()
        self._writer.shutdown(wait=True, cancel_futures=True)
        self._reader.shutdown(wait=True, cancel_futures=True)
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _file(self, value: int) -> int:
        if value not in self._files:
            try:
                if self._folder is None:
                    self._folder, self._lock = new_folder(self._parent)
                path = self._folder / f"{value}.bin"
                self._files[value] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as err:
                raise spill_failed(err, self._folder) from err
            self._ends[value] = 0
        return self._files[value]


class ActivationCache:
    """Per (value, batch) items; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        budget: int,
        pinned: frozenset[int] = frozenset(),
        held_elsewhere: Callable[[], int] = lambda: 0,
        placements: dict[int, Placement] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.budget = max(0, budget)
        self.pinned = pinned
        self.placements = placements
        self._elsewhere = held_elsewhere
        self._items: dict[tuple[int, int], Any] = {}
        self._spills = _Spills(folder)
        self._in_memory = self._on_disk = self._peak = 0

    def __enter__(self) -> ActivationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def use(self) -> CacheUse:
        spills = self._spills
        return CacheUse(self._peak, spills.written, self.budget, spills.read_bytes)

    def put(self, value: int, batch: int, item: Any) -> None:
        place = self._place(value, batch, item)
        size = nbytes(item)
        if place == "disk":
            self._items[value, batch] = self._spills.write(value, item)
            self._on_disk += size
        else:
            if place == "host":
                item = item.to("cpu")
            self._items[value, batch] = item
            self._in_memory += size
        self._peak = max(self._peak, self._in_memory + self._on_disk)

    def _place(self, value: int, batch: int, item: Any) -> str:
        """kept (as it is, where it is), host, or disk."""
        if not isinstance(item, torch.Tensor) or value in self.pinned:
            return "kept"
        placement = self.placements.get(value) if self.placements is not None else None
        if placement is not None:
            if batch < placement.device:
                return "kept"
            return "host" if batch < placement.device + placement.memory else "disk"
        over = self._in_memory + nbytes(item) + self._elsewhere() > self.budget
        return "disk" if over else "host"

    def get(self, value: int, batch: int) -> Any:
        item = self._items[value, batch]
        if not isinstance(item, _OnDisk):
            return item
        following = self._items.get((value, batch + 1))
        ahead = following if isinstance(following, _OnDisk) else None
        return self._spills.read(value, batch, item, ahead)

    def flush(self) -> None:
        """Every value put so far is on disk or in memory: later segments may read it."""
        self._spills.flush()

    def release(self, values: tuple[int, ...], batches: int) -> int:
        """Forget `values` for every batch, and delete their files; the bytes of memory
        that this frees."""
        held = self._in_memory
        for value in values:
            for batch in range(batches):
                item = self._items.pop((value, batch), None)
                if isinstance(item, _OnDisk):
                    self._on_disk -= item.size
                elif item is not None:
                    self._in_memory -= nbytes(item)
            self._spills.forget(value)
        return held - self._in_memory

    def close(self) -> None:
        self._items.clear()
        self._spills.close()
