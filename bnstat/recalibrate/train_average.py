"""The classic train-mode average, measured two ways: by PyTorch itself, or through a probe.

`--method train-average` runs BatchNorm in training mode (dropout and the rest in eval
mode) over the data once and takes, per layer, the average over its calls of each
call's batch mean and unbiased variance: what `momentum=None` makes PyTorch accumulate,
as `torch.optim.swa_utils.update_bn` does. An eager module is averaged by PyTorch itself
(`native`), at no cost beyond the forward pass. A TorchScript module has its momentum
compiled in, so the batch moments of each call are computed from the inputs a probe
hands over (`probed`). Both return per-layer averages and call counts; the estimator
combines the processes of a distributed run and sets the statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from bnstat.recalibrate.accumulator import ChannelMoments, Moments
from bnstat.recalibrate.passes import Passes
from bnstat.recalibrate.runtime import Runtime
from bnstat.report.recalibration import PassRecord

Averages = tuple[dict[str, Moments], PassRecord]  # per layer: averages, count = calls


@contextmanager
def training(modules: dict[str, Any], cumulative: bool) -> Iterator[None]:
    """BatchNorm modules in training mode; `cumulative` also sets momentum=None and resets
    their statistics, so PyTorch averages every call. Modes and momenta come back."""
    momenta = {name: module.momentum for name, module in modules.items()}
    for module in modules.values():
        if cumulative:
            module.reset_running_stats()
            module.momentum = None
        module.train()
    try:
        yield
    finally:
        for name, module in modules.items():
            module.eval()
            if cumulative:
                module.momentum = momenta[name]


def native(runtime: Runtime, modules: dict[str, Any], passes: Passes) -> Averages:
    """PyTorch's own cumulative average, one pass stopped after the last layer's calls."""

    def step(_index: int, batch: torch.Tensor) -> None:
        for _ in probe.run(runtime.model_input(batch)):  # the model updates its buffers
            pass

    with training(modules, cumulative=True):
        probe = runtime.probe([runtime.layers[-1].name])
        try:
            record = passes.over_data("train-average", step, merge_singleton=True)
        finally:
            probe.close()
    averages = {}
    for layer in runtime.layers:
        module = modules[layer.name]
        calls = int(module.num_batches_tracked) if module.num_batches_tracked is not None else 0
        averages[layer.name] = Moments(
            module.running_mean.detach().to("cpu", torch.float64),
            module.running_var.detach().to("cpu", torch.float64),
            calls or record.batches,
        )
    return averages, record


def probed(runtime: Runtime, modules: dict[str, Any], passes: Passes) -> Averages:
    """The same average from the probed inputs of every call, for compiled momenta."""
    names = [layer.name for layer in runtime.layers]
    totals = {
        layer.name: torch.zeros(2, layer.channels, dtype=torch.float64) for layer in runtime.layers
    }
    calls = dict.fromkeys(names, 0)

    def step(_index: int, batch: torch.Tensor) -> None:
        for name, values in probe.run(runtime.model_input(batch)):
            one = ChannelMoments(values.shape[1], values.device)
            one.update(values)
            moments = one.compute()
            totals[name] += torch.stack([moments.mean, moments.var])
            calls[name] += 1

    with training(modules, cumulative=False):
        probe = runtime.probe(names)
        try:
            record = passes.over_data("train-average", step, merge_singleton=True)
        finally:
            probe.close()
    averages = {}
    for name in names:
        mean, var = totals[name] / max(calls[name], 1)
        averages[name] = Moments(mean, var, calls[name])
    return averages, record
