"""With --data: run the model on the data once and join what each layer received to the
checkpoint's layers, for the rules and the reports.

The data pass (`execution.measure`, which needs torch) names layers as the model does
and lists them in execution order; the checkpoint's layers come from its state dict. Each
measured layer is matched by name, compared with the statistics stored for it
(`data_fit.fit`), and the result goes to the rules (`DataFacts`, for BN014) and to the
reports (`LayerData` per layer, `DataRun` per checkpoint).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bnstat.data_fit import ChannelFit, fit, layer_data
from bnstat.layer_batch import LayerBatch
from bnstat.readers.base import RawCheckpoint
from bnstat.report.inspection import DataRun, LayerReport
from bnstat.rules.base import DataFacts

if TYPE_CHECKING:
    from bnstat.execution.loop import Progress
    from bnstat.execution.measure import Measurement
    from bnstat.execution.model_options import RunRequest

SHOWN_OPTIONS = ("image_size", "resize", "mean", "std", "channels", "max_samples", "batch_size")


@dataclass(frozen=True)
class DataRequest:
    """The model run on data, and its options as the command line gave them (a finding's
    fix names the `recalibrate` command that repairs what the data showed)."""

    run: RunRequest
    arguments: tuple[str, ...] = ()

    def recalibrate_command(self, checkpoint: str, source: str | None) -> str:
        """The `bnstat recalibrate` command line that fixes the statistics on this data."""
        path = Path(checkpoint)
        output = path.with_name(f"{path.stem}.recalibrated{path.suffix}")
        chosen = ("--source", source) if source and "--source" not in self.arguments else ()
        words = ["bnstat", "recalibrate", checkpoint, "--data", str(self.run.data)]
        return shlex.join([*words, "--output", str(output), *chosen, *self.arguments])


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
    from bnstat.execution.measure import measure_on_data

    request = on_data.request
    measurement = measure_on_data(raw, source, request.run, on_data.progress)
    command = request.recalibrate_command(str(raw.path), source if on_data.several else None)
    facts = data_facts(batch, measurement, thresholds, command)
    return Diagnosed(
        facts,
        with_layer_data(layers, batch, facts, measurement.samples),
        data_run(str(request.run.data), measurement),
    )


def data_facts(
    batch: LayerBatch, measurement: Measurement, thresholds: Mapping[str, float], command: str
) -> DataFacts:
    """How each measured layer's stored statistics fit the data, by layer index."""
    index = {name: i for i, name in enumerate(batch.names)}
    fits: dict[int, ChannelFit] = {}
    for name in measurement.order:
        if name in index:
            i = index[name]
            stored_mean, stored_var = batch.of_layer(batch.mean, i), batch.of_layer(batch.var, i)
            fits[i] = fit(
                measurement.measured[name],
                stored_mean,
                stored_var,
                measurement.eps[name],
                thresholds,
            )
    order = tuple(index[name] for name in measurement.order if name in index)
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


def data_run(folder: str, measurement: Measurement) -> DataRun:
    options = measurement.options
    shown = tuple((name, getattr(options, name)) for name in SHOWN_OPTIONS)
    return DataRun(
        folder, measurement.samples, measurement.origin, shown, measurement.input,
        measurement.unreadable, measurement.warnings,
    )  # fmt: skip
