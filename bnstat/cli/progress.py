"""A progress bar on stderr for passes over calibration data (shown only on a terminal).

rich is loaded only when the bar is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.progress import TaskID

Result = TypeVar("Result")


class TerminalProgress:
    """One bar per pass over the calibration data, counting samples."""

    def __init__(self, total_samples: int | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._total = total_samples
        self._task: TaskID | None = None

    def start(self, label: str) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(label, total=self._total)

    def advance(self, samples: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, samples)

    def finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._total = self._total or int(task.completed)

    def close(self) -> None:
        self._progress.stop()


def with_progress(work: Callable[[TerminalProgress | None], Result]) -> Result:
    """`work(progress)`, with a bar when stderr is a terminal (None otherwise)."""
    progress = TerminalProgress() if sys.stderr.isatty() else None
    try:
        return work(progress)
    finally:
        if progress is not None:
            progress.close()
