"""With --data: run the model on the data once and join what each layer received to the
checkpoint's layers, for the rules and the reports.

The data pass (`recalibrate.diagnosis`, which needs torch) names layers as the model does
and lists them in execution order; the checkpoint's layers come from its state dict. Each
measured layer is matched by name, compared with the statistics stored for it
(`data_fit.fit`), and the result goes to the rules (`DataFacts`, for BN014) and to the
reports (`LayerData` per layer, `DataRun` per checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bnstat.data_fit import ChannelFit, fit, layer_data
from bnstat.readers.base import RawCheckpoint
from bnstat.report.inspection import DataRun, LayerReport
from bnstat.rules.base import DataFacts
from bnstat.stages.read_layers import LayerBatch

if TYPE_CHECKING:
    from bnstat.recalibrate.diagnosis import DataRequest, Diagnosis
    from bnstat.recalibrate.passes import Progress

SHOWN_OPTIONS = ("image_size", "resize", "mean", "std", "channels", "max_samples", "batch_size")


@dataclass(frozen=True)
class OnData:
    """The data request, the progress display, and whether the file has several models
    (then a fix names the model)."""

    request: DataRequest
    progress: Progress | None
    several: bool


@dataclass(frozen=True)
class Diagnosed:
    """A model's layers with what they received: facts for the rules, layers (in execution
    order, with their `data`) and the run for the report."""

    facts: DataFacts
    layers: list[LayerReport]
    run: DataRun


def diagnose_model(
    raw: RawCheckpoint,
    source: str | None,
    batch: LayerBatch,
    layers: list[LayerReport],
    thresholds: Mapping[str, float],
    on_data: OnData,
) -> Diagnosed:
    """Run the file's model `source` on the data and join the result to its layers."""
    from bnstat.recalibrate.diagnosis import diagnose

    request = on_data.request
    diagnosis = diagnose(raw, source, request, on_data.progress)
    command = request.recalibrate_command(str(raw.path), source if on_data.several else None)
    facts = data_facts(batch, diagnosis, thresholds, command)
    return Diagnosed(
        facts,
        with_layer_data(layers, batch, facts, diagnosis.samples),
        data_run(str(request.folder), diagnosis),
    )


def data_facts(
    batch: LayerBatch, diagnosis: Diagnosis, thresholds: Mapping[str, float], command: str
) -> DataFacts:
    """How each measured layer's stored statistics fit the data, by layer index."""
    index = {name: i for i, name in enumerate(batch.names)}
    fits: dict[int, ChannelFit] = {}
    for name in diagnosis.order:
        if name in index:
            i = index[name]
            stored_mean, stored_var = batch.of_layer(batch.mean, i), batch.of_layer(batch.var, i)
            fits[i] = fit(
                diagnosis.measured[name], stored_mean, stored_var, diagnosis.eps[name], thresholds
            )
    order = tuple(index[name] for name in diagnosis.order if name in index)
    return DataFacts(fits, order, command)


def with_layer_data(
    layers: list[LayerReport], batch: LayerBatch, facts: DataFacts, samples: int
) -> list[LayerReport]:
    """The layer reports in execution order with their `data` summaries (layers the data
    pass did not reach come last); the first layer off is marked."""
    first = next((i for i in facts.order if facts.fits[i].channels_off), None)
    rank = {batch.names[i]: position for position, i in enumerate(facts.order)}
    ordered = sorted(layers, key=lambda layer: rank.get(layer.name, len(rank)))
    by_name = {batch.names[i]: i for i in facts.fits}
    return [
        replace(layer, data=layer_data(facts.fits[i], samples, i == first))
        if (i := by_name.get(layer.name)) is not None
        else layer
        for layer in ordered
    ]


def data_run(folder: str, diagnosis: Diagnosis) -> DataRun:
    options = diagnosis.options
    shown = tuple((name, getattr(options, name)) for name in SHOWN_OPTIONS)
    return DataRun(folder, diagnosis.samples, diagnosis.origin, shown, diagnosis.input)
