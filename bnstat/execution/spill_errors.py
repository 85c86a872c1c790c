"""What a run says when the temporary folder cannot take the activations it spills there.

A full disk (ENOSPC, or a quota: EDQUOT) in the middle of a sweep is no fault of the
model, and the user can do something about it: keep more in memory before spilling
(`cache_mb`), point TMPDIR at a folder with room, or use fewer samples. The cache turns
any error of its spill writes into one of these messages.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

from bnstat.errors import NamesArguments, TemporaryFolderError
from bnstat.execution.resources import temporary_folder

FULL = {errno.ENOSPC, errno.EDQUOT}


class SpillError(TemporaryFolderError, NamesArguments):
    """A spill write failed; the message names the folder and what would help, each
    argument by its name in the call (`cache_mb`) or on the command line (`--cache-mb`)."""

    def __init__(self, where: Path, reason: str, full: bool) -> None:
        super().__init__(where, reason, full)
        self.where, self.reason, self.full = where, reason, full

    def named(self, name: Callable[[str], str]) -> str:
        if self.full:
            return (
                f"the temporary folder {self.where} is full ({self.reason}) while spilling "
                f"activations: keep more in memory before spilling ({name('cache_mb')}), "
                f"point TMPDIR at a folder with more room, or use fewer samples "
                f"({name('max_samples')})"
            )
        return (
            f"cannot spill activations to the temporary folder {self.where} ({self.reason}): "
            f"point TMPDIR at a writable folder with room, or keep more in memory "
            f"({name('cache_mb')})"
        )


def spill_failed(err: OSError, folder: Path | None = None) -> SpillError:
    """The error to raise when writing spilled activations (to `folder`, in the temporary
    folder) failed with `err`."""
    where = folder.parent if folder is not None else temporary_folder()
    return SpillError(where, err.strerror or str(err), err.errno in FULL)
