"""What the machine offers a run: memory, a temporary folder's free space and its speed,
and an accelerator's memory.

The activation cache of an exact sweep is planned against these before the first pass
(`planning`): a memory budget (the user's `cache_mb`, else half of the memory available
when the run starts, which the report states), the free space of the folder that spills
go to (the standard temporary folder, `TMPDIR`), how fast that folder writes and reads
back (measured once per process on a small file, and only where a plan needs to know),
and on a CUDA device half of its free memory with the speed of a copy to the host and
back. The numbers are estimates for a plan; nothing here holds memory or disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

SHARE_OF_AVAILABLE = 0.5  # of the memory available at the start: the default budget
PROBE_BYTES = 64 * 2**20  # written and read back to measure the temporary folder


@dataclass(frozen=True)
class Disk:
    """A folder for spilled values: where, how much room, and its speeds in bytes/s,
    given (`known_speeds`: writing, reading back) or measured when first asked for: a
    plan that keeps everything in memory never asks, and never writes the probe file."""

    folder: Path
    free: int
    known_speeds: tuple[float, float] | None = None

    @property
    def write_speed(self) -> float:
        return self._speeds()[0]

    @property
    def read_speed(self) -> float:
        return self._speeds()[1]

    def _speeds(self) -> tuple[float, float]:
        return self.known_speeds or _speeds(str(self.folder))


@dataclass(frozen=True)
class Device:
    """An accelerator: memory for cached values on it, and copies to and from the host."""

    name: str
    memory: int
    copy_speed: float  # bytes/s each way


@dataclass(frozen=True)
class Budget:
    """Host memory for cached values and held data: the user's, or a share of what was
    available (`available`, None where the user gave it)."""

    bytes: int
    available: int | None = None


def available_memory() -> int | None:
    """Memory the system could give this process now (Linux: MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = getattr(os, "sysconf_names", {}).get("SC_AVPHYS_PAGES")
    return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE") if pages is not None else None


def memory_budget(cache_bytes: int | None) -> Budget:
    """The user's budget, else half of the available memory (2 GiB where that is unknown,
    `available` 0)."""
    if cache_bytes is not None:
        return Budget(cache_bytes)
    available = available_memory()
    if available is None:
        return Budget(2 * 2**30, 0)
    return Budget(int(available * SHARE_OF_AVAILABLE), available)


def temporary_folder() -> Path:
    return Path(tempfile.gettempdir())


def disk(folder: Path | None = None) -> Disk:
    """The temporary folder and its free space; its speeds are measured once a process,
    if a plan asks for them."""
    where = folder or temporary_folder()
    return Disk(where, shutil.disk_usage(where).free)


@cache
def _speeds(folder: str) -> tuple[float, float]:
    """Write (with the data reaching the disk) and read-back speeds of `folder`."""
    block = os.urandom(2**20) * (PROBE_BYTES // 2**20)
    try:
        handle, name = tempfile.mkstemp(prefix="bnstat-speed-", dir=folder)
    except OSError:
        return 1e8, 1e8  # a folder we cannot write to: the plan's error comes later
    try:
        start = time.perf_counter()
        os.write(handle, block)
        os.fsync(handle)
        write = PROBE_BYTES / max(time.perf_counter() - start, 1e-6)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
        start = time.perf_counter()
        os.pread(handle, PROBE_BYTES, 0)
        read = PROBE_BYTES / max(time.perf_counter() - start, 1e-6)
        return write, read
    except OSError:
        return 1e8, 1e8
    finally:
        os.close(handle)
        os.unlink(name)


COPY_PROBE_BYTES = 64 * 2**20


def accelerator(device: torch.device) -> Device | None:
    """A CUDA device's tier for the cache: half its free memory, and its copy speed."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    probe = torch.empty(COPY_PROBE_BYTES, dtype=torch.uint8, device=device)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    host = probe.to("cpu")
    probe.copy_(host)
    torch.cuda.synchronize(device)
    speed = 2 * COPY_PROBE_BYTES / max(time.perf_counter() - start, 1e-6)
    return Device(str(device), int(free * SHARE_OF_AVAILABLE), speed)


def release_freed_memory() -> None:
    """Hand memory that freed tensors left in the allocator's heap back to the system, so
    the process's size follows what it holds (glibc; elsewhere a no-op)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
