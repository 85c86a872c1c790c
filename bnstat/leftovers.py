"""Temporary files and folders that a run holds with a lock, so that the next run can tell
what a killed run left from what a live run is using, and remove the former.

A checkpoint being written (`.NAME.HEX.bnstat-tmp` beside its target) and activations
spilled to disk (`bnstat-cache-*` in the temporary folder) are removed by the run that
made them, on success, errors, Ctrl-C and SIGTERM; only SIGKILL or a power cut leaves
them, and they can be large. Each is held by an `flock` for as long as its run lives (on
the file itself, or on a `.lock` file in the folder), and the kernel drops the lock when
the process ends, however it ends. So a later run that can take the lock knows the item
is stale, even in a temporary folder shared with other users' and containers' runs,
where a process id would prove nothing. An item is created under a name no scan looks
at, locked, and only then renamed to the name the scan looks for: a scanned item is
either held by a live run or stale, never caught between creation and locking.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bnstat.wording import megabytes

TEMPORARY_SUFFIX = ".bnstat-tmp"
SPILL_PREFIX = "bnstat-cache-"
FRESH_PREFIX = ".bnstat-new-"  # not yet locked: no scan looks at it
LOCK_FILE = ".lock"


class Held:
    """The lock on a temporary item, held while its run lives."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _locked(path: Path, flags: int) -> Held:
    descriptor = os.open(path, flags, 0o666)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return Held(descriptor)


def new_file(folder: Path, name: str) -> tuple[Path, Held]:
    """A new empty, locked file beside the target `name` in `folder`, created with mode
    0666 less the umask (as any file a user writes)."""
    for _ in range(100):
        token = os.urandom(6).hex()
        fresh = folder / f"{FRESH_PREFIX}{name}.{token}"
        try:
            held = _locked(fresh, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        path = folder / f".{name}.{token}{TEMPORARY_SUFFIX}"
        try:
            os.rename(fresh, path)
        except BaseException:
            fresh.unlink(missing_ok=True)
            held.release()
            raise
        return path, held
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


def new_folder(parent: Path | None = None) -> tuple[Path, Held]:
    """A new, locked folder `bnstat-cache-*` in `parent`, else the temporary folder."""
    fresh = Path(tempfile.mkdtemp(prefix=FRESH_PREFIX, dir=parent))
    try:
        held = _locked(fresh / LOCK_FILE, os.O_CREAT | os.O_WRONLY)
        path = fresh.with_name(SPILL_PREFIX + fresh.name.removeprefix(FRESH_PREFIX))
        os.rename(fresh, path)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return path, held


@dataclass(frozen=True)
class Leftover:
    """What a killed run left and this run removed."""

    path: Path
    size: int  # bytes


def removal_notes(removed: list[Leftover]) -> tuple[str, ...]:
    """The report's line on what was removed, if anything was."""
    if not removed:
        return ()
    listed = ", ".join(f"{item.path} ({megabytes(item.size)})" for item in removed)
    return (f"removed what killed runs had left: {listed}",)


def remove_stale(folder: Path) -> list[Leftover]:
    """Remove the temporary files and spill folders in `folder` whose lock no process
    holds (see the module docstring); those that cannot be removed stay, unsaid."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        remove: Callable[[Path], bool]
        if entry.name.endswith(TEMPORARY_SUFFIX) and entry.is_file(follow_symlinks=False):
            lock, remove = Path(entry.path), _remove_file
        elif entry.name.startswith(SPILL_PREFIX) and entry.is_dir(follow_symlinks=False):
            lock, remove = Path(entry.path) / LOCK_FILE, _remove_folder
        else:
            continue
        size = _removed_if_stale(Path(entry.path), lock, remove)
        if size is not None:
            removed.append(Leftover(Path(entry.path), size))
    return removed


def _removed_if_stale(path: Path, lock: Path, remove: Callable[[Path], bool]) -> int | None:
    """The size of `path`, removed while holding its free `lock`; None if it is in use."""
    try:
        descriptor = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone, not ours to open, or a folder of another program
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live run holds it
        os.close(descriptor)
        return None
    try:
        size = _size(path)
        return size if remove(path) else None
    finally:
        os.close(descriptor)


def _remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _remove_folder(path: Path) -> bool:
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
