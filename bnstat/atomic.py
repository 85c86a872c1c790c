"""Write a file so that its target is always either the old file or the complete new one.

The new content goes to a temporary file in the target's folder (same file system, so
the final rename is atomic), is fsynced, and is renamed over the target; the folder is
fsynced too. On any failure (an exception, Ctrl-C, SIGTERM, a full disk) the temporary
file is removed and the target is untouched. Only a SIGKILL or a power cut can leave a
stray temporary file, never a partial target; it is locked while its run lives
(`leftovers`), so the next run can remove it.

Whoever stops a run (Ctrl-C during the final write, say) must be told the truth about
each output: inside `recorded_writes()`, every write is recorded as it goes, and after
an interruption a record says whether the rename happened (the temporary file is gone)
or not, whatever instant the signal arrived at.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from bnstat.errors import OutputError
from bnstat.leftovers import new_file
from bnstat.phases import reached
from bnstat.termination import sigterm_raises


@dataclass
class Write:
    """One output of the run: its target, and whether it now holds the new content."""

    target: Path
    done: bool = False

    def __str__(self) -> str:
        state = "written, complete" if self.done else "not written, the input is unchanged"
        return f"{self.target} {state}"


_WRITES: ContextVar[list[Write] | None] = ContextVar("bnstat_writes", default=None)


@contextmanager
def recorded_writes() -> Iterator[list[Write]]:
    """The writes started in the block, in order, each with its state."""
    writes: list[Write] = []
    token = _WRITES.set(writes)
    try:
        yield writes
    finally:
        _WRITES.reset(token)


def _record(target: Path) -> Write:
    write = Write(target)
    writes = _WRITES.get()
    if writes is not None:
        writes.append(write)
    return write


@contextmanager
def atomic_output(target: Path, like: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `target` when the block succeeds.

    The result gets the target's permissions if it exists, else those of `like`, else
    0666 less the umask (0644 under the usual umask 022).
    """
    folder = target.parent
    with sigterm_raises():  # before the temporary file exists, so none is ever orphaned
        write = _record(target)
        try:
            temporary, held = new_file(folder, target.name)
        except OSError as err:
            raise OutputError(f"cannot write in {folder}: {err.strerror or err}") from err
        try:
            yield temporary
            reached("writing")  # the temporary file is complete, the target still the old one
            _finish(temporary, target, like)
            write.done = True
            reached("written")
        except OSError as err:
            write.done = not temporary.exists()
            temporary.unlink(missing_ok=True)
            raise OutputError(f"cannot write {target}: {err.strerror or err}") from err
        except BaseException:
            write.done = not temporary.exists()  # renamed before the interruption
            temporary.unlink(missing_ok=True)
            raise
        finally:
            held.release()


def check_writable(folder: Path) -> None:
    """Refuse a folder where `atomic_output` could not create its temporary file, before
    any expensive work is done for an output that could not be written."""
    try:
        temporary, held = new_file(folder, "probe")
    except OSError as err:
        raise OutputError(f"cannot write in {folder}: {err.strerror or err}") from err
    temporary.unlink(missing_ok=True)
    held.release()


def _finish(temporary: Path, target: Path, like: Path | None) -> None:
    model = target if target.exists() else like
    if model is not None:
        os.chmod(temporary, stat.S_IMODE(model.stat().st_mode))
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def copy_into(source: Path, target: Path) -> None:
    """Copy a file's bytes (the kernel's copy path where it has one)."""
    shutil.copyfile(source, target)
