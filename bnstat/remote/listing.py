"""Folders and glob patterns on object stores and model hubs, as files to choose from.

`s3://bucket/models/` or `hf://org/repo` is a folder: every file under it (names with a
leading dot left out, as in a local folder) goes through the same choice as a local
folder's files: by content, with shards and side files read through their index or
model. A pattern (`s3://bucket/models/**/*.safetensors`) takes the files it matches as
they are and searches the folders it matches. The files found are opened OPEN_AHEAD at a
time before the choice reads them one by one. An HTTP URL names one file: web servers
have no listing bnstat could trust.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bnstat.errors import CheckpointError
from bnstat.remote.connect import filesystem, require
from bnstat.remote.faults import explain
from bnstat.remote.url import LISTABLE, RemoteUrl

if TYPE_CHECKING:
    from bnstat.location import Location

Choose = Callable[[list["Location"]], tuple[list["Location"], int]]
OPEN_AHEAD = 8  # files of a listing opened together before they are told apart


def expand_url(url: RemoteUrl, choose: Choose) -> tuple[list[Location], int]:
    """(checkpoints, files skipped) for a URL; a missing one is left for its reader to
    report, a refused listing is a `CheckpointError`."""
    require(url.scheme)
    if url.scheme not in LISTABLE:
        return [url], 0
    fs = filesystem(url.scheme, url.options)
    try:
        if url.has_glob:
            return _matches(url, fs, choose)
        info = fs.info(url.path)
        if info.get("type") != "directory":
            return [url], 0
        return choose(_opened_ahead(_files(url, fs, url.path)))
    except FileNotFoundError:
        return [url], 0
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{url}: {explain(err, url)}") from err


def _matches(url: RemoteUrl, fs: Any, choose: Choose) -> tuple[list[Location], int]:
    """What a pattern matches; like a local glob, `*` and `**` pass over dotted names."""
    found: list[Location] = []
    skipped = 0
    magic = re.search(r"[*?[]", url.path)
    static = url.path[: url.path.rfind("/", 0, magic.start() if magic else None) + 1]
    for path, info in sorted(fs.glob(url.path, detail=True).items()):
        if _hidden(path[len(static) :]) and not _hidden(url.path[len(static) :]):
            continue
        if info.get("type") == "directory":
            taken, passed_over = choose(_opened_ahead(_files(url, fs, path)))
            found, skipped = found + taken, skipped + passed_over
        else:
            found.append(url.child(path))
    return _opened_ahead(found), skipped


def _files(url: RemoteUrl, fs: Any, folder: str) -> list[Location]:
    """Every file under `folder`, sorted, without those in or under a dotted name."""
    prefix = folder.rstrip("/") + "/"
    paths = sorted(fs.find(folder, withdirs=False))
    return [
        url.child(path)
        for path in paths
        if path.startswith(prefix) and not _hidden(path[len(prefix) :])
    ]


def _opened_ahead(files: list[Location]) -> list[Location]:
    """The files, each opened (its size and first and last bytes fetched) OPEN_AHEAD at a
    time, so that telling them apart by content, one after another, asks for nothing
    more. A file that cannot be opened here is opened again there, which says why."""
    from bnstat.remote.file import RemoteFile

    def open_one(file: Location) -> None:
        if isinstance(file, RemoteUrl):
            with contextlib.suppress(CheckpointError):
                RemoteFile(file)

    if len(files) > 1:
        with ThreadPoolExecutor(min(OPEN_AHEAD, len(files))) as pool:
            list(pool.map(open_one, files))
    return files


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))
