"""Ranges of a file on an object store or a model hub, through its fsspec file.

The file is opened once with `cache_type="none"`, so fsspec adds no read-ahead, and each
range is one call of the file's own range fetcher: s3fs, gcsfs, adlfs and
huggingface_hub send one ranged GET for it, with their own consistency checks (s3fs
pins the ETag with `If-Match`; a hub path is pinned to the commit its revision resolved
to) and their own bounded retries.
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

    def open(self) -> int:
        self.handle = self.fs.open(self.url.path, "rb", cache_type="none")
        size: int = self.handle.size
        return size

    def fetch(self, start: int, end: int) -> bytes:
        data: bytes = self.handle._fetch_range(start, end)  # fsspec's per-range hook
        return data

    def whole(self, limit: int) -> bytes:  # object stores always answer ranges
        return self.fetch(0, self.handle.size)
