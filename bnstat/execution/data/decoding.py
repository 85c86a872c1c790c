"""Decoding image files in DataLoader workers, with failures sent back as data.

A worker must not raise for a corrupt file (the whole loader would stop): it returns the
reason instead, and the main process records it. Samples come back as numpy arrays,
pickled through the worker's pipe: torch tensors would travel as shared-memory file
descriptors, whose passing leaves a `pymp-*` folder in TMPDIR behind any worker that is
killed. A worker dies with the main process (Linux: the parent-death signal), ignores
Ctrl-C (the main process stops it) and says nothing on stderr.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from bnstat.errors import DataError
from bnstat.execution.data.images import Skipped

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Item:
    """One file as decoded by a worker: its samples, or why there are none."""

    index: int
    samples: np.ndarray | None
    reason: str = ""
    fatal: bool = False
    origin: str = ""  # what the file held: an image mode ("RGB")


@dataclass(frozen=True)
class Chunk:
    """What a worker sends back for a run of files: samples by first file index, failures."""

    pieces: tuple[tuple[int, np.ndarray], ...]
    failed: tuple[Item, ...]
    origins: tuple[str, ...] = ()  # of the files decoded


def reason_of(err: Exception) -> str:
    """Why a file could not be read, in one line: bnstat's own words where it has them."""
    if isinstance(err, Skipped):
        return str(err)
    reason = (str(err).splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {reason}".rstrip(": ")


class Files(Dataset[Item]):
    """Decodes one file per item in whichever process the DataLoader runs it."""

    def __init__(
        self, files: Sequence[Path], decode: Callable[[Path], tuple[np.ndarray, str]]
    ) -> None:
        self.files = files
        self.decode = decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        try:
            samples, origin = self.decode(self.files[index])
            return Item(index, samples, origin=origin)
        except DataError as err:
            return Item(index, None, str(err), fatal=True)
        except Exception as err:  # whatever a decoder raises, the file is unreadable
            return Item(index, None, reason_of(err))


def collate(items: list[Item]) -> Chunk:
    """Drop failures and join the samples into one array when their shapes and types agree."""
    good = [(item.index, item.samples) for item in items if item.samples is not None]
    failed = tuple(item for item in items if item.samples is None)
    origins = tuple(item.origin for item in items if item.samples is not None)
    if len(good) > 1 and len({(s.shape, s.dtype) for _, s in good}) == 1:
        joined = ((good[0][0], np.concatenate([samples for _, samples in good])),)
        return Chunk(joined, failed, origins)
    return Chunk(tuple(good), failed, origins)


def start_worker(worker_id: int) -> None:
    """In a new worker: die with the main process, leave Ctrl-C to it, stay quiet.

    (A main process that ended before this ran is noticed by torch's own watchdog.)"""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
