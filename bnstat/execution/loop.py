"""The one loop over calibration batches: skipping, merging, progress, timing and the
model's errors.

A data source is any iterable of batches (the image-folder loader, the caller's data of
`caller_data`), a batch being anything `batches` can size: a tensor, or tuples, lists
and mappings of them. Every estimator runs its passes through a `DataLoop` over it: a pass over
the data (feeding the model, or the first segment of a segmented sweep) or over the
batches already in the activation cache (the later segments). What every pass needs is
done here once, not by each source: batches of a size the model cannot run are skipped
and counted, a final one-sample batch is folded into the one before where training-mode
BatchNorm needs two, progress is reported, and the model's own failures (a wrong input
shape, an exception in user code) become one `ModelError` naming the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bnstat.errors import BnstatError, ModelError
from bnstat.execution.batches import Batch, batch_size, described, joined
from bnstat.phases import reached
from bnstat.report.recalibration import PassRecord

Result = TypeVar("Result")


class Progress(Protocol):
    def start(self, label: str, total: int | None = None) -> None:
        """A pass begins over `total` samples (None: not known)."""

    def advance(self, samples: int) -> None: ...
    def finish(self) -> None: ...

    def note(self, text: str) -> None:
        """A line worth showing before a long run (the plan of its cache, say)."""


class Silent:
    def start(self, label: str, total: int | None = None) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def advance(self, samples: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


@dataclass
class DataLoop:
    """Runs passes over `data`; `exact_batch` set: batches of any other size are skipped."""

    data: Iterable[Batch]
    progress: Progress = field(default_factory=Silent)
    exact_batch: int | None = None
    total: int | None = None  # samples in a pass, once known (for progress)

    def data_bytes(self) -> int:
        """Bytes of memory the source holds: decoded data kept between passes, and pages
        of memory-mapped files read and not yet handed back."""
        return int(getattr(self.data, "held_bytes", 0)) + int(getattr(self.data, "mapped_bytes", 0))

    def expected_samples(self, first: Batch) -> int | None:
        """How many samples a pass will see: what the source says (`samples`), else its
        length in batches times the first batch's size; None where neither is known."""
        said = getattr(self.data, "samples", None)
        if isinstance(said, int):
            return said
        try:
            return len(self.data) * batch_size(first)  # type: ignore[arg-type]
        except TypeError:
            return None

    def first_batch(self) -> Batch:
        for batch in self.data:
            if self.exact_batch is None or batch_size(batch) == self.exact_batch:
                return batch
        raise ModelError("the calibration data yielded no batches")

    def over_data(
        self, label: str, step: Callable[[int, Batch], None], merge_singleton: bool = False
    ) -> PassRecord:
        """`step(index, batch)` for every batch the model can run; a record of the pass."""
        start, samples, batches, skipped = time.perf_counter(), 0, 0, 0
        self.progress.start(label, self.total)
        try:
            data = merge_last_singleton(self.data) if merge_singleton else self.data
            for batch in data:
                size = batch_size(batch)
                if self.exact_batch is not None and size != self.exact_batch:
                    skipped += size
                    continue
                _guarded(step, batches, batch, described(batch))
                samples, batches = samples + size, batches + 1
                self.progress.advance(size)
                if batches == 1:
                    reached(label)  # a test may stop here, mid-pass, workers alive
        finally:
            self.progress.finish()
        if batches == 0:
            raise ModelError("the calibration data yielded no batches")
        self.total = samples + skipped
        return PassRecord(label, time.perf_counter() - start, samples, batches, skipped)

    def over_cache(self, label: str, sizes: list[int], step: Callable[[int], None]) -> None:
        """`step(index)` for every cached batch; `sizes` are their sample counts."""
        self.progress.start(label, sum(sizes))
        try:
            for index, size in enumerate(sizes):
                _guarded(step, index, None, f"batch {index + 1} ({size} samples)")
                self.progress.advance(size)
        finally:
            self.progress.finish()


def _guarded(step: Callable[..., None], index: int, batch: Batch | None, what: str) -> None:
    """`step(index[, batch])`, with the model's own failures turned into a ModelError."""
    model_call(lambda: step(index) if batch is None else step(index, batch), what)


def model_call(action: Callable[[], Result], what: str) -> Result:
    """`action()`, a call into the model; its own failures become one clear ModelError
    saying what it was given (`what`: "a batch of shape (32, 3, 8, 8)", say)."""
    try:
        return action()
    except (BnstatError, KeyboardInterrupt):
        raise
    except Exception as err:  # the model's own code rejected the input
        raise ModelError(
            f"the model failed on {what}: {type(err).__name__}: {_first_line(err)}"
        ) from err


def merge_last_singleton(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Fold a final batch of one sample into the batch before it, when there is one and
    the two can be joined."""
    held: list[Batch] = []
    for batch in batches:
        held.append(batch)
        if len(held) == 3:
            yield held.pop(0)
    if len(held) == 2 and batch_size(held[1]) == 1:
        merged = joined(*held)
        held = held if merged is None else [merged]
    yield from held
