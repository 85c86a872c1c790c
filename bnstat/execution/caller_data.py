"""The caller's data, as the library takes it: one iteration, never a mix of two.

`bnstat.recalibrate(model, loader)` and `bnstat.diagnose` take any re-iterable of
batches: a `DataLoader`, a list, a function returning a new iterator. A `DataLoader`
that shuffles or augments gives other batches every time it is iterated, while the exact
sweep, its fallback and the verification pass must all see the same samples. So the
first iteration is the one: its batches are kept (by reference) while they fit the
memory budget, which they share with the activation cache as the image folder's decoded
batches do, and later passes replay them without touching the caller's data. (The
first batch is kept whatever its size, so that the look at it that finds the layers is
resumed rather than repeated.)

Batches that do not fit are not kept. A later pass then iterates the data again and
compares each batch's checksum (`batches.checksum`) with the first iteration's before
the batch is used; a difference stops the run with a `DataError` that says why, so no
value of another iteration is ever mixed in. A pass that stops after the first batch (to
find the layers) is resumed by the next pass instead of starting another iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from bnstat.errors import DataError
from bnstat.execution.batches import Batch, Checksum, batch_size, checksum, head, nbytes
from bnstat.wording import counted

Source = Iterable[Batch] | Callable[[], Iterable[Batch]]


class CallerData:
    """The caller's batches, cut after `max_samples` samples; see the module docstring."""

    def __init__(self, source: Source, budget: int, max_samples: int | None = None) -> None:
        self._source, self.budget, self.max_samples = source, budget, max_samples
        self._kept: list[Batch] | None = []  # the first iteration's batches, while they fit
        self._sums: list[Checksum] = []  # the first iteration's checksums
        self._complete = False  # the first iteration reached its end
        self._live: Iterator[Batch] | None = None  # the first iteration, where it was left
        self.held_bytes = 0  # what the kept batches hold (the DataLoop reports it)
        self.first: Batch | None = None  # the first batch, to describe the data

    def __iter__(self) -> Iterator[Batch]:
        if self._complete and self._kept is not None:
            return iter(self._kept)
        if self._live is not None and self._kept is not None:
            return self._resumed(self._live, list(self._kept))
        return self._iteration(self._fresh(), 0)

    def _fresh(self) -> Iterator[Batch]:
        """A new iteration of the caller's data, cut after `max_samples` samples."""
        iterable = self._source() if callable(self._source) else self._source
        if self._sums and isinstance(iterable, Iterator):
            raise DataError(
                "the data is an iterator, which can be read only once, and its batches do "
                f"not fit in cache_mb ({self.budget // 2**20} MB): pass data that can be "
                "iterated again (a list, a DataLoader, a function returning a new iterator)"
            )
        taken = 0
        for batch in iterable:
            size = batch_size(batch)
            if self.max_samples is not None and taken + size >= self.max_samples:
                yield head(batch, self.max_samples - taken)
                return
            taken += size
            yield batch

    def _resumed(self, live: Iterator[Batch], kept: list[Batch]) -> Iterator[Batch]:
        """The first iteration, left after some batches: those, then the rest of it."""
        yield from kept
        yield from self._iteration(live, len(kept))

    def _iteration(self, batches: Iterator[Batch], start: int) -> Iterator[Batch]:
        """Batches from `start` on, checked against (or recorded as) the first iteration's."""
        first = not self._complete and start == len(self._sums)
        self._live = batches if first else None
        count = start
        for batch in batches:
            self._check(count, batch)
            if first:
                self._keep(batch)
            count += 1
            yield batch
        self._end(count)

    def _check(self, index: int, batch: Batch) -> None:
        """Record the batch's checksum the first time, compare it every other time."""
        sums = checksum(batch)
        if index < len(self._sums):
            if sums != self._sums[index]:
                raise self._differs(f"batch {index + 1} differs")
        elif self._complete:
            raise self._differs(f"it gave more than {counted(len(self._sums), 'batch', 'batches')}")
        else:
            self._sums.append(sums)
            self.first = batch if index == 0 else self.first

    def _keep(self, batch: Batch) -> None:
        """Keep the batch while the kept ones fit the budget; the first is always kept,
        so that the pass that looked at it alone can be resumed."""
        if self._kept is None:
            return
        self._kept.append(batch)
        self.held_bytes += nbytes(batch)
        if self.held_bytes > self.budget and len(self._kept) > 1:
            self._kept, self.held_bytes = None, 0

    def _end(self, count: int) -> None:
        """An iteration reached its end after `count` batches."""
        if count < len(self._sums):
            raise self._differs(f"it ended after {counted(count, 'batch', 'batches')}")
        self._complete, self._live = True, None

    def _differs(self, how: str) -> DataError:
        return DataError(
            f"the data changed between two passes ({how}): a DataLoader that shuffles or "
            "augments gives new batches every time, and the first pass's batches do not fit "
            f"in cache_mb ({self.budget // 2**20} MB) to be replayed; raise cache_mb, pass "
            "verify=False (the exact method's segmented sweep then needs one pass), or give "
            "data that repeats itself (shuffle=False, no random transforms)"
        )
