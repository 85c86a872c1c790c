"""Passes over the calibration data: feed every batch through a probe, time it, report it.

The model's own failures (a wrong input shape, an exception in user code) are turned into
`ModelError`s here, so every caller gets one clear error naming the batch shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from bnstat.errors import ModelError
from bnstat.recalibrate.probes import Consume, Probe


class BatchSource(Protocol):
    """Calibration batches; every call replays the same data in the same order."""

    def batches(
        self, merge_singleton: bool = False, progress: Callable[[int], None] | None = None
    ) -> Iterator[torch.Tensor]: ...


class Progress(Protocol):
    def start(self, label: str) -> None: ...
    def advance(self, samples: int) -> None: ...
    def finish(self) -> None: ...


class Silent:
    def start(self, label: str) -> None:
        pass

    def advance(self, samples: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class PassRecord:
    """One pass over the calibration data."""

    label: str
    seconds: float
    samples: int
    batches: int
    skipped: int = 0  # samples in batches of a size the model cannot run


@dataclass
class Runner:
    """Feeds the calibration batches through a probe, timing each pass."""

    model: nn.Module
    data: BatchSource
    device: torch.device
    input_key: str | None = None
    progress: Progress = field(default_factory=Silent)
    exact_batch: int | None = None  # a program exported for one batch size runs only those

    def model_input(self, batch: torch.Tensor) -> Any:
        batch = batch.to(self.device, non_blocking=True)
        return {self.input_key: batch} if self.input_key else batch

    def guarded(self, batch: torch.Tensor, action: Callable[[Any], object]) -> None:
        """Run `action` on the model input made from `batch`; model failures become ModelError."""
        try:
            action(self.model_input(batch))
        except (ModelError, KeyboardInterrupt):
            raise
        except Exception as err:  # the model's own code rejected the batch
            first_line = str(err).splitlines()[0] if str(err) else ""
            raise ModelError(
                f"the model failed on a batch of shape {tuple(batch.shape)}: "
                f"{type(err).__name__}: {first_line}"
            ) from err

    def run_pass(
        self, label: str, probe: Probe, consume: Consume, train_mode: bool = False
    ) -> PassRecord:
        start, samples, batches, skipped = time.perf_counter(), 0, 0, 0
        self.progress.start(label)
        try:
            for batch in self.data.batches(merge_singleton=train_mode):
                if self.exact_batch is not None and len(batch) != self.exact_batch:
                    skipped += len(batch)
                    continue
                self.guarded(batch, lambda inputs: probe.run(inputs, consume))
                samples, batches = samples + len(batch), batches + 1
                self.progress.advance(len(batch))
        finally:
            self.progress.finish()
            probe.close()
        if batches == 0:
            raise ModelError("the calibration data yielded no batches")
        return PassRecord(label, time.perf_counter() - start, samples, batches, skipped)
