"""The classic train-mode average, as an estimator beside the exact sweep.

`--method train-average` runs BatchNorm in training mode (dropout and the rest in eval
mode) over the data once and takes, per layer, the average over its calls of each
call's batch mean and unbiased variance: what `momentum=None` makes PyTorch accumulate,
as `torch.optim.swa_utils.update_bn` does. It depends on the batch size and is offered
for comparison.

Where the layers average themselves (an eager module: `ModelRunner.training()` says
so), PyTorch does the work at no cost beyond the forward pass, stopped after the last
layer's calls. Where the momentum is compiled in (TorchScript), the batch moments of each
call are computed from the inputs a probe hands over. A distributed run then averages
every process's per-call averages, weighted by their calls, and sets the statistics.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from bnstat.execution import distributed
from bnstat.execution.batches import Batch
from bnstat.execution.loop import DataLoop
from bnstat.execution.model import Model
from bnstat.execution.moments import ChannelMoments, Moments
from bnstat.recalibrate.verification import Witness
from bnstat.report.recalibration import PassRecord

Averages = tuple[dict[str, Moments], PassRecord]  # per layer: averages, count = calls


def train_average(model: Model, loop: DataLoop, witness: Witness | None = None) -> PassRecord:
    """Set every layer's statistics to the train-mode average over the data (see above);
    `witness` keeps the batches the verification will run on."""
    with model.runner.training() as native:
        averages, record = (_native if native else _probed)(model, loop, witness)
    for name, local in averages.items():
        mean, var = distributed.batch_weighted_mean(
            torch.stack([local.mean, local.var]), local.count
        )
        moments = Moments(mean, var, local.count)
        moments.require_finite(name)
        model.store.set(name, moments, distributed.total(record.batches))
    return record


def _native(model: Model, loop: DataLoop, witness: Witness | None) -> Averages:
    """PyTorch's own cumulative average, one pass stopped after the last layer's calls."""
    runner = model.runner

    def step(index: int, batch: Batch) -> None:
        if witness is not None:
            witness.keep(index, batch)
        for _ in probe.run(runner.model_input(batch)):  # the model updates its buffers
            pass

    probe = runner.probe([runner.layers[-1].name])
    try:
        record = loop.over_data("train-average", step, merge_singleton=True)
    finally:
        probe.close()
    averages = {}
    for layer in runner.layers:
        accumulated = model.store.read(layer.name)  # count: the calls it averaged
        averages[layer.name] = replace(accumulated, count=accumulated.count or record.batches)
    return averages, record


def _probed(model: Model, loop: DataLoop, witness: Witness | None) -> Averages:
    """The same average from the probed inputs of every call, for compiled momenta."""
    runner = model.runner
    names = [layer.name for layer in runner.layers]
    totals = {
        layer.name: torch.zeros(2, layer.channels, dtype=torch.float64) for layer in runner.layers
    }
    calls = dict.fromkeys(names, 0)

    def step(index: int, batch: Batch) -> None:
        if witness is not None:
            witness.keep(index, batch)
        for name, values in probe.run(runner.model_input(batch)):
            one = ChannelMoments(values.shape[1], values.device)
            one.update(values)
            moments = one.compute()
            totals[name] += torch.stack([moments.mean, moments.var])
            calls[name] += 1

    probe = runner.probe(names)
    try:
        record = loop.over_data("train-average", step, merge_singleton=True)
    finally:
        probe.close()
    averages = {}
    for name in names:
        mean, var = totals[name] / max(calls[name], 1)
        averages[name] = Moments(mean, var, calls[name])
    return averages, record
