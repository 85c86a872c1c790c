"""What a segmented sweep will cost, measured on its first batch before it starts.

The plan of the activation cache (`planning`) needs, per sample: the bytes of every value
kept between segments, and the time of every segment on the device in use. Both come
from running the segments in order on the first batch (the statistics in the model do
not change): the shapes are the real ones, whatever graph the runtime captured, and the
time is this machine's. Both are per sample, so a quarter of the batch (at least
`TIMED` samples) is enough: per-sample costs at that size are a whole batch's on a CPU,
and an accelerator gets a share that still fills it. It runs twice, and each segment
counts its faster run: a single run's times strayed by up to 2x between identical runs.
The values are dropped as the plan releases them, so this costs half a batch through
the model and holds no more than a segment of one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bnstat.execution.batches import Batch, batch_size, described, head, nbytes
from bnstat.execution.loop import model_call
from bnstat.execution.model import ModelRunner
from bnstat.execution.schedule import Plan

TIMED = 8  # samples timed at least (the whole batch where it is smaller)


@dataclass(frozen=True)
class Profile:
    """Per sample: bytes of each cached value, seconds of each segment; and the largest
    bytes one segment holds at once (its inputs and outputs), per sample."""

    value_bytes: Mapping[int, float]
    segment_seconds: tuple[float, ...]
    working_bytes: float

    @property
    def forward_seconds(self) -> float:
        """One sample through every segment: what the sweep costs without the cache."""
        return sum(self.segment_seconds)


def profile(runner: ModelRunner, plan: Plan, batch: Batch) -> Profile:
    """Run the plan's segments twice on part of `batch` (see the module docstring); each
    segment's time is the faster of its two runs, so what a first call costs (building
    kernels, first touching memory) does not count. A runtime that takes one batch size
    only runs the whole batch, once."""
    size = batch_size(batch)
    if size <= 2 or runner.takes.exact_batch is not None:
        return _run(runner, plan, batch)
    part = head(batch, max(min(size, TIMED), size // 4))
    first, second = _run(runner, plan, part), _run(runner, plan, part)
    fastest = tuple(map(min, first.segment_seconds, second.segment_seconds))
    return replace(second, segment_seconds=fastest)


def _run(runner: ModelRunner, plan: Plan, batch: Batch) -> Profile:
    size = batch_size(batch)
    values: dict[int, Any] = {}
    sizes: dict[int, float] = {}
    seconds: list[float] = []
    working = 0
    what = described(batch)
    for spec in plan.segments:
        run = runner.segment(spec).run
        inputs = [values[v] for v in spec.inputs] if spec.index else [runner.model_input(batch)]
        start = time.perf_counter()
        outputs = model_call(lambda run=run, inputs=inputs: run(inputs), what)  # type: ignore[misc]
        seconds.append((time.perf_counter() - start) / size)
        values.update(zip(spec.outputs, outputs, strict=True))
        sizes.update((v, nbytes(out) / size) for v, out in zip(spec.outputs, outputs, strict=True))
        working = max(working, sum(map(nbytes, inputs)) + sum(map(nbytes, outputs)))
        for value in plan.release.get(spec.index, ()):
            values.pop(value, None)
    cached = {value: sizes.get(value, 0.0) for value in plan.cached}
    return Profile(cached, tuple(seconds), working / size)
