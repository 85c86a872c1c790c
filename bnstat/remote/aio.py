"""Where HTTP requests run: one event loop on a thread of its own, and aiohttp's sessions.

aiohttp is asynchronous and bnstat's readers are not: a reader, on whatever thread,
hands its request to this loop and waits for the answer (`run`). The loop starts with
the first request, and its sessions (connection pools, one per timeout) are closed when
the process exits. A worker process forked from one that had a loop starts afresh: the
loop's thread does not survive the fork. Nothing here is imported by a local run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CLOSE_WITHIN = 5.0  # seconds given at exit to close the sessions' connections

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_sessions: dict[float, Any] = {}  # timeout -> aiohttp.ClientSession, used on the loop only
_inherited: list[Any] = []  # a forked child's copies of its parent's loop and sessions


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result, run on the loop; blocks the calling thread until then."""
    return asyncio.run_coroutine_threadsafe(coroutine, _running()).result()


async def session(timeout: float) -> Any:
    """The session whose requests wait `timeout` seconds at most to connect and for each
    read (made on first use; call on the loop)."""
    found = _sessions.get(timeout)
    if found is None:
        import aiohttp

        limit = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        found = _sessions[timeout] = aiohttp.ClientSession(timeout=limit)
    return found


def _running() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="bnstat-http", daemon=True).start()
        return _loop


def _close() -> None:
    """Close every session at exit (aiohttp warns of one left open)."""

    async def close_all() -> None:
        for opened in list(_sessions.values()):
            await opened.close()
        _sessions.clear()

    if _loop is not None and _sessions:
        with contextlib.suppress(TimeoutError):  # the process ends either way
            asyncio.run_coroutine_threadsafe(close_all(), _loop).result(CLOSE_WITHIN)


def _forget() -> None:
    """In a forked child: the parent's loop and connections are not this process's. They
    are kept, never closed nor collected: closing a socket here would take it out of the
    epoll set the child shares with the parent, whose requests would then never wake."""
    global _loop, _lock
    _inherited.extend([_loop, *_sessions.values()])
    _loop, _lock = None, threading.Lock()
    _sessions.clear()


atexit.register(_close)
os.register_at_fork(after_in_child=_forget)
