"""A remote file as `RandomAccess`: exact byte ranges, merged, fetched in parallel, counted.

Opening learns the size and validator, and fetches the file's first HEAD and last TAIL
bytes: the format's magic bytes, a safetensors header or a torch pickle, a zip archive's
end record and central directory. Over HTTP the request for the last bytes learns the
size too (a suffix range), then the first bytes follow: two requests, one for a file of
at most TAIL bytes. On an object store or the hub the library's metadata request learns
it, then both ends are fetched in parallel. A worker process that opens the file again
asks only for its last byte. Readers then `prefetch` the spans they are about to read
(every BatchNorm tensor of a model, with the zip headers in front of them): spans closer
than GAP are merged, what was fetched before left out, and the rest fetched PARALLEL at a
time. Any other `pread` is one request for exactly the bytes it lacks (a pickle read on
past the first bytes asks only for what follows them).
fsspec's read-ahead block cache is never used: nothing is fetched that was not asked for.

429 and 5xx answers are retried RETRIES times, after a pause that doubles (or the
server's Retry-After, up to MAX_PAUSE). A server that ignores ranges is read from the
start as one stream, up to `--max-download` bytes, else refused. Every request and byte
is counted in the URL's `Cost`, which the report shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from bnstat.errors import CheckpointError
from bnstat.remote.faults import RangesIgnored, causes, explain, retryable
from bnstat.remote.url import RemoteUrl
from bnstat.tensor_ref import past_end

HEAD = 64 * 2**10
TAIL = 128 * 2**10
GAP = 32 * 2**10  # bytes between two spans fetched in one request rather than two
PIECE = 16 * 2**20  # a longer read is fetched in pieces of this size, in parallel
PARALLEL = 16  # requests in flight together for one file
RETRIES = 4
FIRST_PAUSE = 0.2  # seconds before the first retry; doubled for each next one
MAX_PAUSE = 5.0
KEEP = 2**20  # single reads up to this size are kept for a later reader of the file

T = TypeVar("T")


class Fetcher(Protocol):
    """One scheme's way to learn a file's size and fetch its ranges."""

    def open(self, tail: int) -> tuple[int, bytes]:
        """(the size, the last `tail` bytes where the request that learns it brings them,
        else none)"""

    def fetch(self, start: int, end: int) -> bytes: ...

    def whole(self, limit: int) -> bytes: ...


def _fetcher(url: RemoteUrl) -> Fetcher:
    if url.scheme in ("http", "https"):
        from bnstat.remote.http import HttpFetcher

        return HttpFetcher(url)
    from bnstat.remote.store import StoreFetcher

    return StoreFetcher(url)


class RemoteFile:
    """The bytes of a URL, fetched as the readers ask for them."""

    def __init__(self, url: RemoteUrl) -> None:
        self.url = url
        self.known = url.state
        self.name = str(url)
        if self.known.handle is None:
            self._open(_fetcher(url))
        self.size: int = self.known.size or 0

    def _open(self, fetcher: Fetcher) -> None:
        """Learn the size, then fetch the file's ends; a file opened before (by the process
        a worker was forked from) keeps its size and what was fetched of it."""
        first = self.known.size is None
        try:
            size, last = self._attempt(lambda: fetcher.open(TAIL if first else 1))
        except RangesIgnored:
            self.known.handle = fetcher
            self._stream_whole()
            return
        self.known.handle = fetcher
        self.known.cost.add(0, len(last))
        if first:
            self.known.size = size
            self.known.keep(size - len(last), last)
            self.prefetch(_ends(size, len(last)))

    @property
    def _fetcher(self) -> Fetcher:
        fetcher: Fetcher = self.known.handle
        return fetcher

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the filesystem library."""

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise past_end(self.name, offset, length, self.size)
        have = self.known.cached(offset, length)
        if len(have) == length:
            return have
        start, end = offset + len(have), offset + length  # fetch what is not there yet
        if end - start > PIECE:
            pieces = [(a, min(a + PIECE, end)) for a in range(start, end, PIECE)]
            return have + b"".join(self._fetch_all(pieces))
        data = self._fetch(start, end)
        if end - start <= KEEP:
            self.known.keep(start, data)
        return have + data

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """Fetch these (start, end) spans now, merged and in parallel, for later reads."""
        wanted = [
            (start + len(self.known.cached(start, end - start)), end)
            for start, end in merge(spans, GAP)
            if 0 <= start < end <= (self.known.size or 0)
        ]
        wanted = [(start, end) for start, end in wanted if start < end]
        for (start, _), data in zip(wanted, self._fetch_all(wanted), strict=True):
            self.known.keep(start, data)

    def _fetch_all(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        if len(spans) <= 1:
            return [self._fetch(start, end) for start, end in spans]
        with ThreadPoolExecutor(min(PARALLEL, len(spans))) as pool:
            return list(pool.map(lambda span: self._fetch(*span), spans))

    def _fetch(self, start: int, end: int) -> bytes:
        if self.known.whole is None:
            try:
                data = self._attempt(lambda: self._fetcher.fetch(start, end))
            except RangesIgnored:
                self._stream_whole()
            else:
                if len(data) != end - start:
                    raise CheckpointError(f"truncated body: {len(data)} of {end - start} bytes")
                self.known.cost.add(0, len(data))
                return data
        assert self.known.whole is not None
        return self.known.whole[start:end]

    def _stream_whole(self) -> None:
        """The server ignores ranges: the whole file, once, within --max-download."""
        with self.known.lock:
            if self.known.whole is None:
                limit = self.url.options.max_download
                data = self._attempt(lambda: self._fetcher.whole(limit))
                if len(data) != (self.known.size or len(data)):
                    raise CheckpointError(f"truncated body: {len(data)} of {self.known.size} bytes")
                self.known.cost.add(0, len(data))
                self.known.whole = data
                self.known.size = len(data)

    def _attempt(self, call: Callable[[], T]) -> T:
        """One request, retried on 429 and 5xx; every failure is a `CheckpointError`."""
        for attempt in range(RETRIES):
            self.known.cost.add(1, 0)
            try:
                return call()
            except RangesIgnored:
                raise
            except Exception as err:
                if attempt + 1 < RETRIES and retryable(err):
                    time.sleep(_pause(err, attempt))
                    continue
                raise explain(err, self.url) from err
        raise AssertionError("unreachable: the last attempt returns or raises")


def _ends(size: int, last: int) -> list[tuple[int, int]]:
    """The first reads of a file: its first HEAD and last TAIL bytes, but for the `last`
    bytes already fetched (one span for a small file; none where `last` is all of it)."""
    rest = size - last
    return [(0, min(rest, HEAD)), (max(0, size - TAIL), rest)]


def merge(spans: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Sorted spans, those less than `gap` bytes apart joined into one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _pause(err: BaseException, attempt: int) -> float:
    """The server's Retry-After when it gives a number, else a doubling pause."""
    for item in causes(err):
        headers = getattr(item, "headers", None) or {}
        after = str(headers.get("Retry-After", "")) if hasattr(headers, "get") else ""
        if after.strip().isdigit():
            return min(float(after), MAX_PAUSE)
    return min(FIRST_PAUSE * 2.0**attempt, MAX_PAUSE)
