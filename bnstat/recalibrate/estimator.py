"""The estimators: exact eval-consistent statistics (default) and the train-mode average.

Default (`exact`): for every BatchNorm layer, the mean and unbiased variance of its input
over the whole calibration set when the model runs in eval mode with the new statistics.
A layer's input depends only on the layers upstream of it, so a sweep in front order is
exact (`sweep`): segmented through the model's graph where it can be captured, else one
probe pass per front. Extra sweeps (`sweeps > 1`) re-measure everything and report the
largest change, which is float rounding unless the model calls a layer on values that
depend on its own output.

`train-average` is the classic procedure (`momentum=None` in training mode, as
`torch.optim.swa_utils.update_bn`, with dropout and the rest in eval mode): the average
over batches of each batch's mean and unbiased variance, upstream layers normalising by
batch statistics. It depends on the batch size and is offered for comparison.

A last pass (`verify`) measures every layer's eval-mode input with the new statistics,
through the runner's probe rather than the sweep's segments, and reports how far the
stored statistics are from it. The model is left as it was found unless everything
succeeded (`StatisticsStore.kept`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from bnstat.errors import ArgumentError, ModelError
from bnstat.execution import distributed
from bnstat.execution.batches import Batch
from bnstat.execution.loop import DataLoop, Progress, Silent
from bnstat.execution.measure import measure
from bnstat.execution.model import Model
from bnstat.execution.moments import Moments
from bnstat.execution.schedule import Unsegmentable, fronts, plan
from bnstat.recalibrate.sweep import SweepResult, by_front, segmented
from bnstat.recalibrate.train_average import train_average
from bnstat.report.recalibration import CacheUse, PassRecord

DEFAULT_CACHE_BYTES = 2 * 2**30


class Method(str, enum.Enum):
    EXACT = "exact"
    TRAIN_AVERAGE = "train-average"


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    before: Moments  # the statistics the model had (count: its num_batches_tracked)
    after: Moments


@dataclass(frozen=True)
class Estimate:
    method: Method
    layers: tuple[LayerEstimate, ...]
    unreached: tuple[str, ...]  # BatchNorm layers the forward pass never calls
    batches: int
    samples: int
    passes: tuple[PassRecord, ...]
    sweep_changes: tuple[float, ...]  # largest relative change made by sweeps 2, 3, ...
    consistency: dict[str, float] | None  # per layer: largest eval-mode mismatch after
    strategy: str  # how the statistics were computed, in words
    cache: CacheUse | None = None  # the activation cache of a segmented sweep


def mismatch(measured: Moments, stored: Moments, eps: float) -> float:
    """Largest channel error: mean in units of the channel's std, variance relative."""
    scale = torch.sqrt(stored.var + eps).clamp_min(1e-12)
    mean_error = ((measured.mean - stored.mean).abs() / scale).max()
    var_error = ((measured.var - stored.var).abs() / (stored.var + eps).clamp_min(1e-24)).max()
    return float(torch.maximum(mean_error, var_error))


def _current(model: Model) -> dict[str, Moments]:
    return {layer.name: model.store.read(layer.name) for layer in model.runner.layers}


def _largest_change(before: dict[str, Moments], after: dict[str, Moments]) -> float:
    return max((mismatch(after[name], old, 0.0) for name, old in before.items()), default=0.0)


@dataclass
class _Exact:
    """The exact method's sweeps, segmented where the graph allows it (and `segment` is on)."""

    model: Model
    loop: DataLoop
    cache_bytes: int
    segment: bool = True

    def __post_init__(self) -> None:
        capture = self.model.runner.capture()
        self.plan = None
        try:
            if not self.segment:
                raise Unsegmentable("segments turned off")
            if capture.refused is not None:
                raise Unsegmentable(capture.refused)
            self.plan = plan(capture.ops)
            segments = len(self.plan.segments)
            self.strategy = f"segmented: {segments} segments of the {capture.how} graph, one pass"
        except Unsegmentable as why:
            names = [layer.name for layer in self.model.runner.layers]
            self.groups = fronts(capture.ops) if capture.ops else [[name] for name in names]
            self.strategy = (
                f"by front: {len(self.groups)} passes, each stopped after its front "
                f"(the model cannot be run in segments: {why})"
            )

    def sweep(self, label: str) -> SweepResult:
        if self.plan is not None:
            return segmented(self.model, self.plan, self.loop, label, self.cache_bytes)
        return by_front(self.model, self.groups, self.loop, label)

    def sweeps(self, count: int) -> tuple[list[PassRecord], list[float], CacheUse | None]:
        """`count` sweeps: their passes, the change made by each after the first, the cache."""
        records, changes, cache = [], [], None
        previous = None  # the statistics after the sweep before, kept only to compare
        for number in range(1, count + 1):
            result = self.sweep(f"sweep {number}")
            records.append(result.record)
            cache = cache or result.cache
            current = _current(self.model) if count > 1 else None
            if previous is not None and current is not None:
                changes.append(_largest_change(previous, current))
            previous = current
        return records, changes, cache


def _verify(model: Model, loop: DataLoop) -> tuple[dict[str, float], PassRecord]:
    """After recalibration: how far each layer's eval-mode input moments are from its stats."""
    runner, store = model.runner, model.store
    names = [layer.name for layer in runner.layers]
    sums, record = measure(runner, names, loop, "verify")
    measured = sums.compute()
    eps = {layer.name: layer.eps for layer in runner.layers}
    return {n: mismatch(measured[n], store.read(n), eps[n]) for n in measured}, record


def estimate(
    model: Model,
    data: Iterable[Batch],
    method: Method = Method.EXACT,
    sweeps: int = 1,
    verify: bool = True,
    progress: Progress | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    segment: bool = True,
) -> Estimate:
    """Recalibrate the model's BatchNorm statistics on `data` (see the module docstring).

    `cache_bytes` bounds the activations kept in memory by a segmented sweep; `segment`
    off sweeps by front even where the graph could be cut (to compare the two).
    """
    if sweeps < 1:
        raise ArgumentError("sweeps", "must be at least 1")
    runner = model.runner
    loop = DataLoop(data, progress or Silent(), runner.takes.exact_batch)
    with runner.evaluating(), model.store.kept() as outcome:
        runner.prepare(loop.first_batch())
        if not runner.layers:
            raise ModelError("the model has no BatchNorm layers with running statistics")
        before = _current(model)
        changes: list[float] = []
        cache = None
        if method is Method.TRAIN_AVERAGE:
            records, strategy = [train_average(model, loop)], "train-mode average, one pass"
        else:
            exact = _Exact(model, loop, cache_bytes, segment)
            records, changes, cache = exact.sweeps(sweeps)
            strategy = exact.strategy
        consistency = None
        if verify:
            consistency, record = _verify(model, loop)
            records.append(record)
        outcome.succeeded = True
    after = _current(model)
    return Estimate(
        method=method,
        layers=tuple(LayerEstimate(name, before[name], after[name]) for name in before),
        unreached=runner.unreached,
        batches=distributed.total(records[0].batches),
        samples=distributed.total(records[0].samples),
        passes=tuple(records),
        sweep_changes=tuple(changes),
        consistency=consistency,
        strategy=strategy,
        cache=cache,
    )
