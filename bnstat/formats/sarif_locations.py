"""Where a SARIF result lies: a checkpoint file, relative to the directory bnstat ran in.

Code scanning matches a result's file to the repository by a URI relative to the
checkout (`%SRCROOT%`, the working directory of a CI job), so a path given as an absolute
one inside that directory is written relative to it, with the base named in the run's
`originalUriBaseIds`; only a file outside it keeps an absolute `file://` URI, and a URL
stays the URL (as shown: without credentials or query string). A
checkpoint has no lines: the location has no region, which also tells the upload action
not to read a multi-gigabyte file through its line hasher.
"""

from __future__ import annotations

import os
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from bnstat.remote.url import looks_like_url

ROOT = "%SRCROOT%"


def artifact(path: str, directory: str) -> dict[str, Any]:
    """The artifactLocation of a checkpoint path as given (`directory`: where bnstat ran,
    "" when unknown: relative paths stay relative to it)."""
    if looks_like_url(path):
        return {"uri": path}
    pure = PurePath(path)
    if not directory and not pure.is_absolute():
        return {"uri": quote(pure.as_posix()), "uriBaseId": ROOT}
    absolute = os.path.normpath(os.path.join(directory, path))
    if directory and os.path.commonpath([absolute, directory]) == os.path.normpath(directory):
        relative = PurePath(os.path.relpath(absolute, directory)).as_posix()
        return {"uri": quote(relative), "uriBaseId": ROOT}
    return {"uri": PurePath(absolute).as_uri()}


def base_ids(directory: str) -> dict[str, Any]:
    """The run's `originalUriBaseIds`: what the relative URIs are relative to."""
    if not directory:
        return {ROOT: {"description": {"text": "the directory bnstat ran in"}}}
    return {ROOT: {"uri": PurePath(directory).as_uri().rstrip("/") + "/"}}
