"""HTTP(S) range requests on fsspec's aiohttp session, read within bounds.

fsspec's HTTP file reads a 206 answer's body whole, however long, and its `cat_file`
reads a 200 answer (a server that ignores Range) whole too: a server could make bnstat
read gigabytes. Here each range is one GET on the session of fsspec's HTTPFileSystem
(its timeouts, redirect limit, proxies and `user:password@` handling), and no more of the
body is read than was asked for. Every answer must carry the ETag (or, without one, the
Last-Modified) of the first; the request also asks the server to check it (`If-Match`,
`If-Unmodified-Since`). A server that gives neither is read as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bnstat.errors import CheckpointError
from bnstat.remote.connect import filesystem
from bnstat.remote.faults import ChangedError, RangesIgnored, changed_message
from bnstat.remote.url import RemoteUrl

CHUNK = 2**20
_CONDITIONS = {"ETag": "If-Match", "Last-Modified": "If-Unmodified-Since"}


class HttpFetcher:
    """Ranges of one HTTP(S) file; `open` learns its size and validator (a HEAD)."""

    def __init__(self, url: RemoteUrl) -> None:
        self.url = url
        self.fs: Any = filesystem(url.scheme, url.options)
        self.validator: tuple[str, str] | None = None

    def open(self) -> int:
        """A HEAD request: the file's size, and its ETag (or Last-Modified) to hold to."""
        from fsspec.asyn import sync

        size: int = sync(self.fs.loop, self._head)
        return size

    def fetch(self, start: int, end: int) -> bytes:
        from fsspec.asyn import sync

        data: bytes = sync(self.fs.loop, self._get, start, end)
        return data

    def whole(self, limit: int) -> bytes:
        """The file streamed from its start, refused beyond `limit` bytes."""
        from fsspec.asyn import sync

        data: bytes = sync(self.fs.loop, self._stream, limit)
        return data

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity", **extra}
        if self.validator is not None:
            headers[_CONDITIONS[self.validator[0]]] = self.validator[1]
        return headers

    def _check(self, response: Any) -> None:
        if response.status == 412:
            raise ChangedError(changed_message())
        response.raise_for_status()
        if self.validator is not None:
            name, value = self.validator
            if response.headers.get(name, value) != value:
                raise ChangedError(changed_message())

    async def _head(self) -> int:
        session = await self.fs.set_session()
        async with session.head(self.fs.encode_url(self.url.path), allow_redirects=True,
                                headers={"Accept-Encoding": "identity"},
                                **self.fs.kwargs) as response:  # fmt: skip
            response.raise_for_status()
            headers = response.headers
            self.validator = next(((k, headers[k]) for k in _CONDITIONS if headers.get(k)), None)
            if response.content_length is None:
                raise CheckpointError("the server does not say how large the file is")
            size: int = response.content_length
            return size

    async def _get(self, start: int, end: int) -> bytes:
        session = await self.fs.set_session()
        headers = self._headers({"Range": f"bytes={start}-{end - 1}"})
        async with session.get(self.fs.encode_url(self.url.path), headers=headers,
                               **self.fs.kwargs) as response:  # fmt: skip
            self._check(response)
            if response.status != 206:
                raise RangesIgnored()
            return await _exactly(response, end - start)

    async def _stream(self, limit: int) -> bytes:
        session = await self.fs.set_session()
        async with session.get(self.fs.encode_url(self.url.path), headers=self._headers({}),
                               **self.fs.kwargs) as response:  # fmt: skip
            self._check(response)
            declared = response.content_length
            if declared is not None and declared > limit:
                raise _too_large(declared, limit)
            data = bytearray()
            while chunk := await response.content.read(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise _too_large(None, limit)
            if declared is not None and len(data) != declared:
                raise CheckpointError(f"truncated body: {len(data)} of {declared} bytes")
            return bytes(data)


async def _exactly(response: Any, length: int) -> bytes:
    """`length` bytes of the body; a shorter body is truncated, a longer one refused."""
    declared = response.content_length
    if declared is not None and declared != length:
        raise CheckpointError(f"the server answered {declared} bytes for a range of {length}")
    try:
        data: bytes = await response.content.readexactly(length)
    except asyncio.IncompleteReadError as err:
        raise CheckpointError(
            f"truncated body: {len(err.partial)} of {length} bytes, then the connection closed"
        ) from None
    if await response.content.read(1):
        raise CheckpointError(f"the server answered more than the {length} bytes asked for")
    return data


def _too_large(size: int | None, limit: int) -> CheckpointError:
    whole = f" ({size} bytes)" if size is not None else ""
    return CheckpointError(
        f"the server ignores range requests, and reading the whole file{whole} would take "
        f"over --max-download {limit // 2**20} MiB: download it first, or raise --max-download"
    )
