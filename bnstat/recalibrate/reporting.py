"""The report of a recalibration (`bnstat.report.recalibration`), filled in from what the
estimate measured: per layer, how far the statistics moved (`bnstat.drift`) and how exact
they are; and from what the data was (a folder, or the caller's batches)."""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.drift import drift
from bnstat.execution.data import FolderData
from bnstat.execution.model import Origin
from bnstat.recalibrate.estimator import Estimate, LayerEstimate
from bnstat.report.recalibration import LayerChange, RecalibrationReport, Unreadable


@dataclass(frozen=True)
class DataSummary:
    """What the report says of the data: its kind, batch size, what the model was fed (in
    words, and one sample's shape) and the files skipped."""

    kind: str
    batch_size: int
    input: str
    input_shape: tuple[int, ...] | None
    unreadable: tuple[Unreadable, ...] = ()
    warnings: tuple[str, ...] = ()  # about the data used, one line each

    @staticmethod
    def of_folder(data: FolderData) -> DataSummary:
        return DataSummary(
            data.kind,
            data.options.batch_size,
            data.describe(),
            data.sample_shape,
            tuple(data.unreadable),
            tuple(data.warnings),
        )


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
    estimate: Estimate, data: DataSummary, eps: dict[str, float], *, checkpoint: str,
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
        batch_size=data.batch_size,
        data_kind=data.kind,
        samples=estimate.samples,
        batches=estimate.batches,
        skipped=estimate.passes[0].skipped,
        unreadable=data.unreadable,
        passes=estimate.passes,
        sweep_changes=estimate.sweep_changes,
        layers=layer_changes(estimate, eps),
        unreached=estimate.unreached,
        seconds=seconds,
        input=data.input,
        input_shape=data.input_shape,
        strategy=estimate.strategy,
        cache=estimate.cache,
        plan=estimate.plan,
        processes=processes,
        warnings=data.warnings,
        notes=notes,
    )
