"""SIGTERM as an exception, so that cleanup code runs when a job is cancelled.

CI runners and schedulers stop a job with SIGTERM, whose default action ends the process
at once: temporary files (a checkpoint being written, activations spilled to disk) would
be left behind. Inside `sigterm_raises()` the signal raises `Terminated` instead, which
unwinds through every `finally` like Ctrl-C does, and reaches whoever called the library:
the CLI ends with exit code 143, as a shell reports a process ended by SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived inside `sigterm_raises()`.

    A `BaseException`, like `KeyboardInterrupt`, so that no `except Exception` takes it
    for an error to report: cleanup code sees it on its way out.
    """


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
