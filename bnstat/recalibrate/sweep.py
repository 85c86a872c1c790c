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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from bnstat.recalibrate import distributed
from bnstat.recalibrate.accumulator import ChannelMoments, Moments
from bnstat.recalibrate.cache import ActivationCache
from bnstat.recalibrate.passes import Passes
from bnstat.recalibrate.runtime import Runtime
from bnstat.recalibrate.schedule import Plan, SegmentSpec
from bnstat.report.recalibration import CacheUse, PassRecord
from bnstat.termination import sigterm_raises


@dataclass(frozen=True)
class SweepResult:
    record: PassRecord
    cache: CacheUse | None = None


class Sums:
    """Input moments of some layers, channel by channel, over every batch of a pass."""

    def __init__(self, runtime: Runtime, names: Iterable[str], device: torch.device) -> None:
        channels = {layer.name: layer.channels for layer in runtime.layers}
        self.moments = {name: ChannelMoments(channels[name], device) for name in names}

    def add(self, found: Iterable[tuple[str, torch.Tensor]]) -> None:
        for name, values in found:
            self.moments[name].update(values)

    def compute(self) -> dict[str, Moments]:
        """Mean and unbiased variance per layer, over every process of a distributed run."""
        for moments in self.moments.values():
            moments.synchronize()
        return {name: moments.compute() for name, moments in self.moments.items()}

    def set_statistics(self, runtime: Runtime, batches: int) -> None:
        """Every layer normalises with its sums from now on."""
        for name, result in self.compute().items():
            result.require_variance(name)
            result.require_finite(name)
            runtime.set_statistics(name, result, batches)


class _Segments:
    """Runs a plan's segments one at a time, caching their outputs and measuring fronts."""

    def __init__(
        self, runtime: Runtime, plan: Plan, cache: ActivationCache, device: torch.device
    ) -> None:
        self.runtime, self.plan, self.cache, self.device = runtime, plan, cache, device
        self.sizes: list[int] = []  # samples in each cached batch

    def begin(self, spec: SegmentSpec) -> None:
        self.spec, self.sums = spec, Sums(self.runtime, spec.measure, self.device)
        self.segment = self.runtime.segment(spec)

    def on_data(self, index: int, batch: torch.Tensor) -> None:
        self.sizes.append(len(batch))
        self._run(index, [self.runtime.model_input(batch)])

    def on_cache(self, index: int) -> None:
        self._run(index, [self.cache.get(value, index) for value in self.spec.inputs])

    def _run(self, index: int, values: Sequence[Any]) -> None:
        outputs = dict(zip(self.spec.outputs, self.segment.run(values), strict=True))
        for name, inputs in self.spec.measure.items():
            self.sums.add(
                (name, outputs[v] if v in outputs else self.cache.get(v, index)) for v in inputs
            )
        for value, item in outputs.items():
            self.cache.put(value, index, item)

    def end(self, batches: int) -> None:
        self.cache.release(self.plan.release.get(self.spec.index, ()), len(self.sizes))
        self.sums.set_statistics(self.runtime, batches)


def segmented(
    runtime: Runtime,
    plan: Plan,
    passes: Passes,
    label: str,
    cache_bytes: int,
    device: torch.device,
) -> SweepResult:
    """One sweep through the plan's segments (see the module docstring)."""
    start = time.perf_counter()
    cache = ActivationCache(cache_bytes, plan.pinned, passes.data_bytes)
    with sigterm_raises(), cache:
        segments = _Segments(runtime, plan, cache, device)
        count = len(plan.segments)
        segments.begin(plan.segments[0])
        record = passes.over_data(f"{label} · segment 1/{count}", segments.on_data)
        batches = distributed.total(record.batches)
        segments.end(batches)
        for spec in plan.segments[1:]:
            segments.begin(spec)
            passes.over_cache(
                f"{label} · segment {spec.index + 1}/{count}", segments.sizes, segments.on_cache
            )
            segments.end(batches)
        whole = replace(
            record, label=f"{label} ({count} segments)", seconds=time.perf_counter() - start
        )
        return SweepResult(whole, cache.use)


def by_front(
    runtime: Runtime, groups: list[list[str]], passes: Passes, label: str, device: torch.device
) -> SweepResult:
    """The fallback: one probe pass per front of layers (see the module docstring)."""
    records = []
    for number, names in enumerate(groups, start=1):
        part = f"{label} · front {number}/{len(groups)}"
        sums, record = measure(runtime, names, passes, part, device)
        sums.set_statistics(runtime, distributed.total(record.batches))
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


def measure(
    runtime: Runtime, names: Sequence[str], passes: Passes, label: str, device: torch.device
) -> tuple[Sums, PassRecord]:
    """Input moments of the layers `names` from one probe pass in the model's current state."""
    sums = Sums(runtime, names, device)
    probe = runtime.probe(names)
    try:
        record = passes.over_data(
            label, lambda _index, batch: sums.add(probe.run(runtime.model_input(batch)))
        )
    finally:
        probe.close()
    return sums, record
