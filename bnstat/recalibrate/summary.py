"""What a recalibration did: per layer, how far the statistics moved (`bnstat.drift`) and
how exact they are."""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.drift import drift
from bnstat.recalibrate.cache import CacheUse
from bnstat.recalibrate.data import CalibrationData, Unreadable
from bnstat.recalibrate.estimator import Estimate, LayerEstimate
from bnstat.recalibrate.passes import PassRecord


@dataclass(frozen=True)
class LayerChange:
    name: str
    channels: int
    mean_shift: (
        float  # largest |new - old| / sqrt(new var + eps); inf if the old mean was not finite
    )
    var_ratio_low: float  # smallest new/old variance
    var_ratio_high: float
    changed: int  # channels that moved by more than 1%
    consistency: float | None  # largest eval-mode mismatch afterwards (None: not verified)


@dataclass(frozen=True)
class RecalibrationReport:
    checkpoint: str
    output: str | None  # None on the processes of a distributed run that do not write
    source: str | None
    model: str  # torchscript, arch or pickled module
    method: str
    device: str
    batch_size: int
    data_kind: str
    samples: int
    batches: int
    skipped: int  # samples left out: not a whole batch of the size the model was exported for
    unreadable: tuple[Unreadable, ...]
    passes: tuple[PassRecord, ...]
    sweep_changes: tuple[float, ...]
    layers: tuple[LayerChange, ...]
    unreached: tuple[str, ...]
    seconds: float
    input: str  # what the model was fed: file contents, conversions, sample shape
    input_shape: tuple[int, ...] | None  # one sample
    strategy: str  # how the exact statistics were computed, in words
    cache: CacheUse | None  # the activation cache of a segmented sweep
    processes: int  # under torchrun: how many shared the data

    @property
    def consistency(self) -> float | None:
        values = [layer.consistency for layer in self.layers if layer.consistency is not None]
        return max(values) if values else None


def layer_change(layer: LayerEstimate, eps: float, consistency: float | None) -> LayerChange:
    moved = drift(
        layer.before.mean.numpy(), layer.before.var.numpy(),
        layer.after.mean.numpy(), layer.after.var.numpy(), eps,
    )  # fmt: skip
    return LayerChange(
        name=layer.name,
        channels=len(layer.after.mean),
        mean_shift=moved.mean_shift,
        var_ratio_low=moved.var_ratio_low,
        var_ratio_high=moved.var_ratio_high,
        changed=moved.changed,
        consistency=consistency,
    )


def layer_changes(estimate: Estimate, eps: dict[str, float]) -> tuple[LayerChange, ...]:
    consistency = estimate.consistency or {}
    return tuple(
        layer_change(layer, eps[layer.name], consistency.get(layer.name))
        for layer in estimate.layers
    )


def summarize(
    estimate: Estimate, data: CalibrationData, eps: dict[str, float], *, checkpoint: str,
    output: str | None, source: str | None, model: str, device: str, seconds: float,
    processes: int = 1,
) -> RecalibrationReport:  # fmt: skip
    """The report of one recalibration, whatever ran the model."""
    return RecalibrationReport(
        checkpoint=checkpoint,
        output=output,
        source=source,
        model=model,
        method=estimate.method.value,
        device=device,
        batch_size=data.options.batch_size,
        data_kind=data.kind,
        samples=estimate.samples,
        batches=estimate.batches,
        skipped=estimate.passes[0].skipped,
        unreadable=tuple(data.unreadable),
        passes=estimate.passes,
        sweep_changes=estimate.sweep_changes,
        layers=layer_changes(estimate, eps),
        unreached=estimate.unreached,
        seconds=seconds,
        input=data.describe(),
        input_shape=data.sample_shape,
        strategy=estimate.strategy,
        cache=estimate.cache,
        processes=processes,
    )
