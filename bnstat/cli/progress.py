"""Progress on stderr for passes over calibration data: a bar per pass with the time left
on a terminal, and in any case the plan of a long run as one line before it starts.

rich is loaded only when the bar is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.progress import TaskID

Result = TypeVar("Result")


class Notes:
    """No bars (stderr is not a terminal, or they were turned off): only the notes, such
    as the line that announces a long run."""

    def start(self, label: str, total: int | None = None) -> None:
        pass

    def advance(self, samples: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, text: str) -> None:
        print(f"bnstat: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class TerminalProgress(Notes):
    """One bar per pass over the calibration data, counting samples, with the time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._total: int | None = None
        self._task: TaskID | None = None

    def start(self, label: str, total: int | None = None) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.remove_task(self._task)
        self._total = total or self._total
        self._task = self._progress.add_task(label, total=self._total)

    def advance(self, samples: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, samples)

    def finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._total = self._total or int(task.completed)

    def note(self, text: str) -> None:
        self._progress.console.print(f"bnstat: {text}", markup=False, highlight=False)

    def close(self) -> None:
        self._progress.stop()


def with_progress(work: Callable[[Notes], Result], bars: bool = True) -> Result:
    """`work(progress)`: bars when stderr is a terminal and `bars` is on, notes always."""
    progress = TerminalProgress() if bars and sys.stderr.isatty() else Notes()
    try:
        return work(progress)
    finally:
        progress.close()
