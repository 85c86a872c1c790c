"""What has been learnt of a remote file, shared by every reader of it in one process.

Sniffing a URL and reading it are two openings of one file: the size, the validator
(ETag or Last-Modified) and the bytes already fetched are kept here so the second costs
no request, and `Cost` counts the requests and bytes of the file and of the side files
read with it (the shards of an index), for the report. Both travel with the URL to a
worker process; the lock does not (a new one is made there).
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path
from typing import Any

CACHE_LIMIT = 64 * 2**20  # bytes of fetched spans kept per file


class Cost:
    """Requests made and bytes received for one checkpoint."""

    def __init__(self) -> None:
        self.requests = 0
        self.fetched = 0
        self._lock = threading.Lock()

    def add(self, requests: int, fetched: int) -> None:
        with self._lock:
            self.requests += requests
            self.fetched += fetched

    def __getstate__(self) -> dict[str, Any]:
        return {"requests": self.requests, "fetched": self.fetched}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.requests, self.fetched = state["requests"], state["fetched"]


class Known:
    """A remote file's size, the handle it is read through, and the spans fetched so far
    (sorted, disjoint), within CACHE_LIMIT bytes."""

    def __init__(self, cost: Cost) -> None:
        self.cost = cost
        self.size: int | None = None
        self.handle: Any = None  # the filesystem library's open file; not sent to workers
        self.whole: bytes | None = None  # the file, streamed whole from a server without ranges
        self.local: Path | None = None  # a whole copy on disk, read instead (`remote.download`)
        self.starts: list[int] = []
        self.spans: list[bytes] = []
        self.lock = threading.Lock()

    def cached(self, offset: int, length: int) -> bytes:
        """The bytes at `offset`, as far as fetched spans hold them without a gap: all
        `length` of them, the first few, or none."""
        if self.whole is not None:
            return self.whole[offset : offset + length]
        parts: list[bytes] = []
        at, end = offset, offset + length
        with self.lock:
            while at < end:
                i = bisect.bisect_right(self.starts, at) - 1
                if i < 0 or at >= self.starts[i] + len(self.spans[i]):
                    break
                parts.append(self.spans[i][at - self.starts[i] : end - self.starts[i]])
                at += len(parts[-1])
        return b"".join(parts)

    def keep(self, start: int, data: bytes) -> None:
        """Remember a fetched span (one inside a kept span, or over the limit, is not)."""
        with self.lock:
            if sum(map(len, self.spans)) + len(data) > CACHE_LIMIT:
                return
            i = bisect.bisect_right(self.starts, start)
            self.starts.insert(i, start)
            self.spans.insert(i, data)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["lock"]
        state["handle"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()
