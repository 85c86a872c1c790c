"""What a run says when the temporary folder cannot take the activations it spills there.

A full disk (ENOSPC, or a quota: EDQUOT) in the middle of a sweep is no fault of the
model, and the user can do something about it: keep more in memory before spilling
(`--cache-mb`), point TMPDIR at a folder with room, or use fewer samples. The cache turns
any error of its spill writes into one of these messages; the planner that checks the
room before a run uses the same wording.
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

from bnstat.errors import TemporaryFolderError

FULL = {errno.ENOSPC, errno.EDQUOT}
REMEDIES = (
    "keep more in memory before spilling (--cache-mb), point TMPDIR at a folder with "
    "more room, or use fewer samples (--max-samples)"
)


def temporary_folder() -> Path:
    """Where spilled activations go: TMPDIR, else the system's temporary folder."""
    return Path(tempfile.gettempdir())


def spill_failed(err: OSError, folder: Path | None = None) -> TemporaryFolderError:
    """The error to raise when writing spilled activations (to `folder`, in the temporary
    folder) failed with `err`."""
    where = folder.parent if folder is not None else temporary_folder()
    reason = err.strerror or str(err)
    if err.errno in FULL:
        return TemporaryFolderError(
            f"the temporary folder {where} is full ({reason}) while spilling activations: "
            f"{REMEDIES}"
        )
    return TemporaryFolderError(
        f"cannot spill activations to the temporary folder {where} ({reason}): point TMPDIR "
        "at a writable folder with room, or keep more in memory (--cache-mb)"
    )
