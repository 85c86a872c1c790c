"""The report of a recalibration (`bnstat.report.recalibration`), filled in from what the
estimate measured: per layer, how far the statistics moved (`bnstat.drift`) and how exact
they are."""

from __future__ import annotations

from bnstat.drift import drift
from bnstat.execution.data import FolderData
from bnstat.execution.model import Origin
from bnstat.recalibrate.estimator import Estimate, LayerEstimate
from bnstat.report.recalibration import LayerChange, RecalibrationReport


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


def recalibration_report(
    estimate: Estimate, data: FolderData, eps: dict[str, float], *, checkpoint: str,
    output: str | None, origin: Origin, seconds: float, processes: int = 1,
    notes: tuple[str, ...] = (),
) -> RecalibrationReport:  # fmt: skip
    """The report of one recalibration, whatever ran the model."""
    return RecalibrationReport(
        checkpoint=checkpoint,
        output=output,
        source=origin.source,
        model=origin.kind,
        method=estimate.method.value,
        device=origin.device,
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
        warnings=tuple(data.warnings),
        notes=notes,
    )
