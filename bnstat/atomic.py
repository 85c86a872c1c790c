"""Write a file so that its target is always either the old file or the complete new one.

The new content goes to a temporary file in the target's folder (same file system, so
the final rename is atomic), is fsynced, and is renamed over the target; the folder is
fsynced too. On any failure (an exception, Ctrl-C, SIGTERM, a full disk) the temporary
file is removed and the target is untouched. Only a SIGKILL or a power cut can leave a
stray temporary file, never a partial target.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bnstat.errors import OutputError
from bnstat.termination import sigterm_raises


@contextmanager
def atomic_output(target: Path, like: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `target` when the block succeeds.

    The result gets the target's permissions if it exists, else those of `like`, else
    0666 less the umask (0644 under the usual umask 022).
    """
    folder = target.parent
    with sigterm_raises():  # before the temporary file exists, so none is ever orphaned
        try:
            temporary = _new_file(folder, target.name)
        except OSError as err:
            raise OutputError(f"cannot write in {folder}: {err.strerror or err}") from err
        try:
            yield temporary
            _finish(temporary, target, like)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise OutputError(f"cannot write {target}: {err.strerror or err}") from err
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


def _new_file(folder: Path, name: str) -> Path:
    """A new empty file beside the target, created with mode 0666 less the umask, as any
    file a user writes (tempfile.mkstemp would make it 0600 whatever the umask)."""
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(6)}.bnstat-tmp"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


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
