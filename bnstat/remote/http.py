"""HTTP(S) range requests on aiohttp, read within bounds.

aiohttp is the client under fsspec's HTTPFileSystem; bnstat drives it directly. fsspec's
HTTP file reads a 206 answer's body whole, however long, and its `cat_file` reads a 200
answer (a server that ignores Range) whole too: a server could make bnstat read
gigabytes. Here no more of a body is read than was asked for, and a URL costs no import
of fsspec (a fifth of the time of a check of one URL). aiohttp takes `user:password@`
from the URL and follows up to MAX_REDIRECTS redirects; `--timeout` bounds each connect
and each read (`aio.session`).

Opening asks for the last bytes with a suffix range (`Range: bytes=-N`): its answer says
the file's size (Content-Range) and its ETag or Last-Modified, so no HEAD request is
needed. Every later answer must carry the same validator, and every request asks the
server to check it (`If-Match`, `If-Unmodified-Since`); a server that gives neither is
read as it is.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from bnstat.errors import CheckpointError
from bnstat.remote import aio
from bnstat.remote.faults import ChangedError, RangesIgnored, changed_message
from bnstat.remote.url import RemoteUrl

CHUNK = 2**20
MAX_REDIRECTS = 10
_CONDITIONS = {"ETag": "If-Match", "Last-Modified": "If-Unmodified-Since"}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIABLE = re.compile(r"bytes \*/(\d+)")


class HttpFetcher:
    """Ranges of one HTTP(S) file; `open` learns its size and validator."""

    def __init__(self, url: RemoteUrl) -> None:
        self.url = url
        self.validator: tuple[str, str] | None = None

    def open(self, tail: int) -> tuple[int, bytes]:
        """(the file's size, its last `tail` bytes or all of a shorter file): one GET."""
        return aio.run(self._last(tail))

    def fetch(self, start: int, end: int) -> bytes:
        return aio.run(self._get(start, end))

    def whole(self, limit: int) -> bytes:
        """The file streamed from its start, refused beyond `limit` bytes."""
        return aio.run(self._stream(limit))

    async def _send(self, extra: dict[str, str]) -> Any:
        """The response to a GET with these headers (to be used in `async with`)."""
        headers = {"Accept-Encoding": "identity", **extra}
        if self.validator is not None:
            headers[_CONDITIONS[self.validator[0]]] = self.validator[1]
        session = await aio.session(self.url.options.timeout)
        return session.get(self.url.path, headers=headers, max_redirects=MAX_REDIRECTS)

    def _check(self, response: Any) -> None:
        if response.status == 412:
            raise ChangedError(changed_message())
        response.raise_for_status()
        headers = response.headers
        if self.validator is None:  # the first answer: what every later one must carry
            self.validator = next(((k, headers[k]) for k in _CONDITIONS if headers.get(k)), None)
        elif headers.get(self.validator[0], self.validator[1]) != self.validator[1]:
            raise ChangedError(changed_message())

    async def _last(self, tail: int) -> tuple[int, bytes]:
        async with await self._send({"Range": f"bytes=-{tail}"}) as response:
            if response.status == 416:  # an empty file has no last bytes to send
                return _total(_UNSATISFIABLE, response), b""
            self._check(response)
            if response.status != 206:
                raise RangesIgnored()
            found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            start, end, size = (int(n) for n in found.groups()) if found else (0, -1, -1)
            if end + 1 != size or start != max(0, size - tail):
                raise CheckpointError(_unsaid(response))
            return size, await _exactly(response, size - start)

    async def _get(self, start: int, end: int) -> bytes:
        async with await self._send({"Range": f"bytes={start}-{end - 1}"}) as response:
            self._check(response)
            if response.status != 206:
                raise RangesIgnored()
            return await _exactly(response, end - start)

    async def _stream(self, limit: int) -> bytes:
        async with await self._send({}) as response:
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


def _total(pattern: re.Pattern[str], response: Any) -> int:
    """The file's size as a Content-Range header gives it."""
    found = pattern.fullmatch(response.headers.get("Content-Range", ""))
    if found is None:
        raise CheckpointError(_unsaid(response))
    return int(found.group(1))


def _unsaid(response: Any) -> str:
    shown = response.headers.get("Content-Range", "none")
    return f"the server does not say how large the file is (Content-Range: {shown})"


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
