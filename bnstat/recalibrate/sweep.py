"""The exact estimator's sweeps: front by front, every layer measured once its upstream is final.

Segmented (the default): the model's graph is cut at its BatchNorm fronts
(`schedule.plan`); the first segment runs on the data, each later one on the values that
earlier ones left in the activation cache. Once a segment has run over every batch, the
layers whose front it closes have the moments of their inputs over the whole data set
(`ChannelMoments`, float64), and their new statistics are set before the next segment
applies them. Every part of the model runs once: the sweep costs about one forward pass.

Fallback (a model no capture could cut): one pass per front, each through a probe that
stops after the front's last layer, so the cost grows with the depth of the BatchNorm
chain. The statistics are the same.

Distributed runs add up the sums of every process once per front, in
`ChannelMoments.synchronize`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bnstat.execution import distributed
from bnstat.execution.batches import Batch, batch_size
from bnstat.execution.cache import ActivationCache
from bnstat.execution.loop import DataLoop
from bnstat.execution.measure import LayerSums, measure
from bnstat.execution.model import Model
from bnstat.execution.planning import CachePlan
from bnstat.execution.resources import release_freed_memory
from bnstat.execution.schedule import Plan, SegmentSpec
from bnstat.recalibrate.verification import Witness
from bnstat.report.recalibration import CacheUse, PassRecord

TRIM_AFTER = 64 * 2**20  # cached bytes a segment frees before the heap is handed back


@dataclass(frozen=True)
class SweepResult:
    record: PassRecord
    cache: CacheUse | None = None


class _Segments:
    """Runs a plan's segments one at a time, caching their outputs and measuring fronts."""

    def __init__(
        self, model: Model, plan: Plan, cache: ActivationCache, witness: Witness | None
    ) -> None:
        self.runner, self.store, self.plan, self.cache = model.runner, model.store, plan, cache
        self.witness = witness
        self.kept = set(plan.cached) - plan.recomputed  # what later segments read
        self.sizes: list[int] = []  # samples in each cached batch

    def begin(self, spec: SegmentSpec) -> None:
        runner = self.runner
        self.spec, self.sums = spec, LayerSums(runner.layers, spec.measure, runner.accumulate_on)
        self.segment = runner.segment(spec)

    def on_data(self, index: int, batch: Batch) -> None:
        self.sizes.append(batch_size(batch))
        if self.witness is not None:
            self.witness.keep(index, batch)
        self._run(index, [self.runner.model_input(batch)])

    def on_cache(self, index: int) -> None:
        self._run(index, [self.cache.get(value, index) for value in self.spec.inputs])

    def _run(self, index: int, values: Sequence[Any]) -> None:
        outputs = dict(zip(self.spec.outputs, self.segment.run(values), strict=True))
        found = [
            (name, outputs[v] if v in outputs else self.cache.get(v, index))
            for name, inputs in self.spec.measure.items()
            for v in inputs
        ]
        self.sums.add(found)
        if self.witness is not None:
            self.witness.saw(index, found)
        for value, item in outputs.items():
            if value in self.kept:  # not a measured value that nothing reads again
                self.cache.put(value, index, item)

    def end(self, batches: int) -> None:
        self.cache.flush()
        freed = self.cache.release(self.plan.release.get(self.spec.index, ()), len(self.sizes))
        self.sums.set_statistics(self.store, batches)
        if freed >= TRIM_AFTER:  # handing back a few pages costs more than it saves
            release_freed_memory()


def segmented(
    model: Model, base: Plan, placed: CachePlan | None, loop: DataLoop, label: str,
    budget: int, witness: Witness | None = None,
) -> SweepResult:  # fmt: skip
    """One sweep through the plan's segments (see the module docstring): the values placed
    as `placed` says, else in memory within `budget` bytes and on disk beyond."""
    start = time.perf_counter()
    plan = placed.plan if placed is not None else base
    placements = placed.placements if placed is not None else None
    cache = ActivationCache(budget, plan.pinned, loop.data_bytes, placements)
    with cache:
        segments = _Segments(model, plan, cache, witness)
        count = len(plan.segments)
        segments.begin(plan.segments[0])
        record = loop.over_data(f"{label} · segment 1/{count}", segments.on_data)
        batches = distributed.total(record.batches)
        segments.end(batches)
        for spec in plan.segments[1:]:
            segments.begin(spec)
            loop.over_cache(
                f"{label} · segment {spec.index + 1}/{count}", segments.sizes, segments.on_cache
            )
            segments.end(batches)
        whole = replace(
            record, label=f"{label} ({count} segments)", seconds=time.perf_counter() - start
        )
        return SweepResult(whole, cache.use)


def by_front(
    model: Model, groups: list[list[str]], loop: DataLoop, label: str, witness: Witness | None
) -> SweepResult:
    """The fallback: one probe pass per front of layers (see the module docstring)."""
    records = []
    for number, names in enumerate(groups, start=1):
        part = f"{label} · front {number}/{len(groups)}"
        sums, record = measure(model.runner, names, loop, part, witness)
        sums.set_statistics(model.store, distributed.total(record.batches))
        records.append(record)
    first = records[0]
    total = PassRecord(
        f"{label} ({len(records)} passes)",
        sum(record.seconds for record in records),
        first.samples,
        first.batches,
        first.skipped,
    )
    return SweepResult(total)
