"""Where a checkpoint's bytes live: a path on this machine, or a URL.

Readers open their file through `open_bytes`, sniffing reads a file's first bytes through
`first_bytes`, and the inputs stage turns arguments into locations with
`parse_location`, so a URL goes wherever a path goes and passes through the same readers,
allow-lists and size limits. A URL is a `bnstat.remote.url.RemoteUrl`, which answers
what the readers ask of a path (`name`, `suffix`, `parent`, `/`) and prints without its
secrets; the code that fetches its bytes (fsspec) is imported only when one is opened.
"""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath
from typing import Protocol, overload

from bnstat.errors import CheckpointError, UsageError
from bnstat.remote.url import SCHEMES, RemoteOptions, RemoteUrl, looks_like_url, safe_text
from bnstat.tensor_ref import OpenFile, RandomAccess

Location = Path | RemoteUrl
TAR_MAGIC_AT = 257


class Opened(RandomAccess, Protocol):
    """Bytes read at any offset, and released when done."""

    def close(self) -> None: ...


def parse_location(text: str, options: RemoteOptions | None = None) -> Location:
    """A URL bnstat reads, or a path; another scheme (`ftp://`) is a `UsageError`."""
    if looks_like_url(text):
        try:
            return RemoteUrl(text, options)
        except ValueError:
            known = ", ".join(f"{scheme}://" for scheme in SCHEMES)
            raise UsageError(f"{safe_text(text)}: bnstat reads paths and {known} URLs") from None
    return Path(text)


def open_bytes(location: Location) -> Opened:
    """The file's bytes; raises `OSError` for a local file that cannot be opened and
    `CheckpointError` for a URL that cannot be read."""
    if isinstance(location, RemoteUrl):
        if location.state.local is not None:  # fetched whole for a command that needs it
            return OpenFile(location.state.local)
        from bnstat.remote.file import RemoteFile

        return RemoteFile(location)
    return OpenFile(location)


def first_bytes(location: Location, count: int) -> tuple[bytes, bytes, int]:
    """(the first `count` bytes, the 5 bytes where a tar archive has its magic, the size),
    or a `CheckpointError` saying why the file cannot be read."""
    if isinstance(location, RemoteUrl):
        file = open_bytes(location)
        head = file.pread(0, min(count, file.size))
        tar = file.pread(TAR_MAGIC_AT, 5) if file.size >= TAR_MAGIC_AT + 5 else b""
        return head, tar, file.size
    try:
        status = location.stat()
        if stat.S_ISDIR(status.st_mode):
            raise CheckpointError("is a directory, not a checkpoint file")
        if not stat.S_ISREG(status.st_mode):  # a FIFO or a device: opening it can block
            raise CheckpointError("not a regular file (a pipe, socket or device)")
        with location.open("rb") as handle:
            head = handle.read(count)
            handle.seek(TAR_MAGIC_AT)
            return head, handle.read(5), status.st_size
    except FileNotFoundError:
        raise CheckpointError("no such file") from None
    except PermissionError:
        raise CheckpointError("permission denied") from None
    except OSError as err:
        raise CheckpointError(f"cannot read: {err.strerror or err}") from err


@overload
def within(folder: Path, relative: str) -> Path | None: ...


@overload
def within(folder: RemoteUrl, relative: str) -> RemoteUrl | None: ...


def within(folder: Location, relative: str) -> Location | None:
    """The file at `relative` under `folder`, or None when that name leaves the folder
    (absolute, `..`, or a symbolic link out of a local folder)."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts:
        return None
    if isinstance(folder, RemoteUrl):
        return folder / relative
    inside = (folder / relative).resolve()
    return inside if inside.is_relative_to(folder.resolve()) else None


def cost_of(location: Location) -> tuple[int | None, int, int] | None:
    """What reading a URL cost so far: (its size, bytes fetched, requests), its side files
    included; None for a local file."""
    if not isinstance(location, RemoteUrl):
        return None
    cost = location.state.cost
    return location.state.size, cost.fetched, cost.requests


def is_remote(location: Location) -> bool:
    """Whether the bytes are fetched over the network (worth announcing reads ahead)."""
    return isinstance(location, RemoteUrl)
