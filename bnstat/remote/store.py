"""Ranges of a file on an object store or a model hub, through its fsspec file.

The file is opened once with `cache_type="none"`, so fsspec adds no read-ahead, and each
range is one call of the file's own range fetcher: s3fs, gcsfs, adlfs and
huggingface_hub send one ranged GET for it, with their own bounded retries. What keeps
the ranges of one file consistent: s3fs pins the object's ETag with `If-Match`; a hub
file is opened at the commit its revision names when bnstat opens it, so a push landing
while bnstat reads cannot mix two commits' bytes; gcsfs and adlfs read whatever the
object holds at each request.
"""

from __future__ import annotations

from typing import Any

from bnstat.remote.connect import filesystem
from bnstat.remote.url import RemoteUrl


class StoreFetcher:
    """Ranges of one object; `open` learns its size (the library's metadata request)."""

    def __init__(self, url: RemoteUrl) -> None:
        self.url = url
        self.fs: Any = filesystem(url.scheme, url.options)
        self.handle: Any = None

    def open(self, tail: int) -> tuple[int, bytes]:
        """The size, from the library's metadata request (which brings no bytes)."""
        path = _at_commit(self.fs, self.url) if self.url.scheme == "hf" else self.url.path
        self.handle = self.fs.open(path, "rb", cache_type="none")
        size: int = self.handle.size
        return size, b""

    def fetch(self, start: int, end: int) -> bytes:
        data: bytes = self.handle._fetch_range(start, end)  # fsspec's per-range hook
        return data

    def whole(self, limit: int) -> bytes:  # object stores always answer ranges
        return self.fetch(0, self.handle.size)


def _at_commit(fs: Any, url: RemoteUrl) -> str:
    """The hub path of `url` with its revision (a branch, a tag, none for `main`) replaced
    by the commit it names now; a bucket, which has no commits, as it is."""
    from huggingface_hub import HfApi

    where = fs.resolve_path(url.path)
    if not hasattr(where, "repo_id"):
        return url.path
    api = HfApi(endpoint=fs.endpoint, token=fs.token)
    info = api.repo_info(where.repo_id, revision=where.revision, repo_type=where.repo_type,
                         timeout=url.options.timeout)  # fmt: skip
    pinned: str = type(where)(
        where.repo_type, where.repo_id, info.sha, where.path_in_repo
    ).unresolve()
    return pinned
