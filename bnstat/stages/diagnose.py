"""With --data (or `bnstat.diagnose`): run the model on the data once and join what each
layer received to the checkpoint's layers, for the rules and the reports.

How the model runs is the caller's (`OnData`): the command line opens the file's model
and loads a folder (`on_folder`), the library measures the module it was given on the
caller's batches. The data pass (`execution.measure`, which needs torch) names layers
as the state dict does and lists them in execution order. Each measured layer is matched
by name, compared with the statistics stored for it (`data_fit.fit`), and the result
goes to the rules (`DataFacts`, for BN014) and to the reports (`LayerData` per layer,
`DataRun` per checkpoint).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bnstat.data_fit import ChannelFit, fit, layer_data
from bnstat.layer_batch import LayerBatch
from bnstat.readers.base import RawCheckpoint
from bnstat.remote.url import looks_like_url
from bnstat.report.inspection import DataRun, LayerReport
from bnstat.rules.base import DataFacts
from bnstat.stages.find_state_dicts import StateDict

if TYPE_CHECKING:
    from bnstat.execution.loop import Progress
    from bnstat.execution.measure import Measurement
    from bnstat.execution.model_options import RunRequest


@dataclass(frozen=True)
class DataRequest:
    """The model run on data, and its options as the command line gave them (a finding's
    fix names the `recalibrate` command that repairs what the data showed)."""

    run: RunRequest
    arguments: tuple[str, ...] = ()

    def recalibrate_command(self, checkpoint: str, source: str | None) -> str:
        """The `bnstat recalibrate` command line that fixes the statistics on this data."""
        path = Path(checkpoint)
        if looks_like_url(checkpoint):  # a URL's recalibrated copy is written here
            path = Path(path.name)
        output = path.with_name(f"{path.stem}.recalibrated{path.suffix}")
        chosen = ("--source", source) if source and "--source" not in self.arguments else ()
        words = ["bnstat", "recalibrate", checkpoint, "--data", str(self.run.data)]
        return shlex.join([*words, "--output", str(output), *chosen, *self.arguments])


@dataclass(frozen=True)
class OnData:
    """How a checkpoint's models are run on data: which one (`source`; None: each), the
    data's name for the report, how to measure a model, and the fix a finding names (for
    a checkpoint and, in a file of several, the model)."""

    data: str
    measure: Callable[[RawCheckpoint, StateDict], Measurement]
    fix: Callable[[str, str | None], str]
    source: str | None = None


def on_folder(request: DataRequest, progress: Progress | None) -> OnData:
    """The command line's data run: the file's model on the folder of `request`."""

    def measure(raw: RawCheckpoint, state: StateDict) -> Measurement:
        from bnstat.execution.measure import measure_on_data

        return measure_on_data(raw, state.name, request.run, progress)

    return OnData(
        str(request.run.data), measure, request.recalibrate_command, request.run.model.spec.source
    )


@dataclass(frozen=True)
class Diagnosed:
    """A model's layers with what they received: facts for the rules, layers (in execution
    order, with their `data`) and the run for the report."""

    facts: DataFacts
    layers: list[LayerReport]
    run: DataRun


def diagnose_model(
    raw: RawCheckpoint,
    state: StateDict,
    several: bool,
    batch: LayerBatch,
    layers: list[LayerReport],
    thresholds: Mapping[str, float],
    on_data: OnData,
) -> Diagnosed:
    """Run the model of `state` on the data and join the result to its layers (`several`:
    the file holds several models, so the fix names this one)."""
    measurement = on_data.measure(raw, state)
    command = on_data.fix(str(raw.path), state.name if several else None)
    facts = data_facts(batch, measurement, thresholds, command)
    return Diagnosed(
        facts,
        with_layer_data(layers, batch, facts, measurement.samples),
        data_run(on_data.data, measurement),
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
    return DataRun(
        folder, measurement.samples, measurement.origin, measurement.options, measurement.input,
        measurement.unreadable, measurement.warnings,
    )  # fmt: skip
