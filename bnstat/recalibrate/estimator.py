"""The estimators: exact eval-consistent statistics (default) and the train-mode average.

Default (`exact`): for every BatchNorm layer, the mean and unbiased variance of its input
over the whole calibration set when the model runs in eval mode with the new statistics.
A layer's input depends only on the layers before it, so one sweep in execution order is
exact: layer k is measured (probe stopping right after it) once layers 1..k-1 hold their
final statistics. Extra sweeps (`sweeps > 1`) re-measure everything and report the
largest change, which is float rounding unless the model calls a layer twice.

`train-average` is the classic procedure (`momentum=None` in training mode, as
`torch.optim.swa_utils.update_bn`, but with dropout and the rest kept in eval mode): the
average over batches of each batch's mean and unbiased variance, with upstream layers
normalising by batch statistics. It depends on the batch size and is offered for
comparison.

Everything runs under `torch.inference_mode()`; modes are restored afterwards, and the
old statistics too if anything fails.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnstat.errors import ModelError
from bnstat.recalibrate import distributed
from bnstat.recalibrate.accumulator import ChannelMoments, Moments
from bnstat.recalibrate.exported import (
    exported_batchnorms,
    exported_order,
    is_exported,
    static_batch,
)
from bnstat.recalibrate.layers import (
    BatchNormLayer,
    batchnorm_modules,
    eager_order,
    in_execution_order,
    is_scripted,
)
from bnstat.recalibrate.model_state import preserved
from bnstat.recalibrate.probes import batchnorm_nodes, make_probe
from bnstat.recalibrate.runner import BatchSource, PassRecord, Progress, Runner, Silent


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
    unreached: tuple[str, ...]  # BatchNorm modules the forward pass never calls
    batches: int
    samples: int
    passes: tuple[PassRecord, ...]
    sweep_changes: tuple[float, ...]  # largest relative change made by sweeps 2, 3, ...
    consistency: dict[str, float] | None  # per layer: largest eval-mode mismatch after


def model_batchnorms(model: nn.Module) -> dict[str, Any]:
    """Every BatchNorm with running statistics: modules, or calls of an exported program."""
    return exported_batchnorms(model) if is_exported(model) else batchnorm_modules(model)  # type: ignore[arg-type]


def execution_order(runner: Runner, modules: dict[str, Any]) -> list[BatchNormLayer]:
    """The model's BatchNorm layers in the order a forward pass reaches them.

    An eager model is run once in eval mode on two samples (the order does not depend on
    the batch size), or on a whole batch if it refuses so few.
    """
    if is_exported(runner.model):
        return in_execution_order(modules, exported_order(runner.model))  # type: ignore[arg-type]
    if is_scripted(runner.model):
        graph: Any = runner.model.inlined_graph
        return in_execution_order(modules, [name for name, _ in batchnorm_nodes(graph)])
    first = next(iter(runner.data.batches()), None)
    if first is None:
        raise ModelError("the calibration data yielded no batches")
    model = runner.model
    try:
        calls = eager_order(model, modules, lambda: runner.guarded(first[:2], model))
    except ModelError:  # a model that only accepts whole batches
        calls = eager_order(model, modules, lambda: runner.guarded(first, model))
    return in_execution_order(modules, calls)


def _snapshot(layer: BatchNormLayer) -> Moments:
    count = getattr(layer.module, "num_batches_tracked", None)
    return Moments(
        layer.module.running_mean.detach().to("cpu", torch.float64).clone(),
        layer.module.running_var.detach().to("cpu", torch.float64).clone(),
        int(count) if count is not None else 0,
    )


def _store(layer: BatchNormLayer, moments: Moments, batches: int) -> None:
    moments.require_finite(layer.name)
    module = layer.module
    module.running_mean.copy_(moments.mean.to(module.running_mean))
    module.running_var.copy_(moments.var.to(module.running_var))
    if getattr(module, "num_batches_tracked", None) is not None:
        module.num_batches_tracked.fill_(batches)


def _measure(
    runner: Runner, label: str, layers: Sequence[BatchNormLayer]
) -> tuple[dict[str, Moments], PassRecord]:
    """Eval-mode input moments of `layers`, from one pass that stops after the last."""
    accumulators = {layer.name: ChannelMoments(layer.channels, runner.device) for layer in layers}
    record = runner.run_pass(
        label, make_probe(runner.model, layers), lambda n, x: accumulators[n].update(x)
    )
    for accumulator in accumulators.values():
        accumulator.synchronize()
    return {name: acc.compute() for name, acc in accumulators.items()}, record


def _sweep(runner: Runner, layers: Sequence[BatchNormLayer], sweep: int) -> list[PassRecord]:
    records = []
    for index, layer in enumerate(layers, start=1):
        label = f"sweep {sweep} · layer {index}/{len(layers)} {layer.name}"
        moments, record = _measure(runner, label, [layer])
        _store(layer, moments[layer.name], distributed.total(record.batches))
        records.append(record)
    return records


def _train_average(runner: Runner, layers: Sequence[BatchNormLayer]) -> list[PassRecord]:
    """Average of per-batch means and unbiased variances with BatchNorm in training mode."""
    if is_exported(runner.model):
        raise ModelError(
            "--method train-average needs training mode, and a torch.export program runs in "
            "the mode it was exported in: use the default method"
        )
    if is_scripted(runner.model):
        return _train_average_scripted(runner, layers)
    for layer in layers:  # PyTorch's own cumulative average; modes and momenta are restored
        layer.module.reset_running_stats()
        layer.module.momentum = None
        layer.module.train()
    record = runner.run_pass(
        "train-average", make_probe(runner.model, layers[-1:]), lambda n, x: None, train_mode=True
    )
    for layer in layers:
        layer.module.eval()
        _store_average(layer, _snapshot(layer), record.batches)
    return [record]


def _store_average(layer: BatchNormLayer, local: Moments, batches: int) -> None:
    """Store a per-batch average; in a distributed run, the average over every process."""
    mean = distributed.batch_weighted_mean(local.mean, batches)
    var = distributed.batch_weighted_mean(local.var, batches)
    _store(layer, Moments(mean, var, local.count), distributed.total(batches))


def _train_average_scripted(runner: Runner, layers: Sequence[BatchNormLayer]) -> list[PassRecord]:
    """The same average for TorchScript, whose momentum is a compiled constant: the batch
    statistics are computed from the probed inputs instead of read from the buffers."""
    sums = {layer.name: [torch.zeros(layer.channels, dtype=torch.float64)] * 2 for layer in layers}

    def consume(name: str, values: torch.Tensor) -> None:
        dims = [0, *range(2, values.dim())]
        var, mean = torch.var_mean(values.float(), dim=dims, correction=1)
        total_mean, total_var = sums[name]
        sums[name] = [
            total_mean + mean.to("cpu", torch.float64),
            total_var + var.to("cpu", torch.float64),
        ]

    for layer in layers:
        layer.module.train()
    record = runner.run_pass(
        "train-average", make_probe(runner.model, layers), consume, train_mode=True
    )
    for layer in layers:
        layer.module.eval()
        total_mean, total_var = sums[layer.name]
        averaged = Moments(total_mean / record.batches, total_var / record.batches, record.batches)
        _store_average(layer, averaged, record.batches)
    return [record]


def _largest_change(before: dict[str, Moments], after: dict[str, Moments]) -> float:
    return max(
        (mismatch(after[name], moments, 0.0) for name, moments in before.items()), default=0.0
    )


def mismatch(measured: Moments, stored: Moments, eps: float) -> float:
    """Largest channel error: mean in units of the channel's std, variance relative."""
    scale = torch.sqrt(stored.var + eps).clamp_min(1e-12)
    mean_error = ((measured.mean - stored.mean).abs() / scale).max()
    var_error = ((measured.var - stored.var).abs() / (stored.var + eps).clamp_min(1e-24)).max()
    return float(torch.maximum(mean_error, var_error))


def _current(layers: Sequence[BatchNormLayer]) -> dict[str, Moments]:
    return {layer.name: _snapshot(layer) for layer in layers}


def estimate(
    model: nn.Module,
    data: BatchSource,
    method: Method = Method.EXACT,
    sweeps: int = 1,
    verify: bool = True,
    device: torch.device | None = None,
    input_key: str | None = None,
    progress: Progress | None = None,
) -> Estimate:
    """Recalibrate `model`'s BatchNorm statistics in place on `data` (see the module doc)."""
    if sweeps < 1:
        raise ModelError("--passes must be at least 1")
    exported = is_exported(model)
    runner = Runner(model, data, device or torch.device("cpu"), input_key, progress or Silent())
    if exported:
        runner.exact_batch = static_batch(model)  # type: ignore[arg-type]
    modules = model_batchnorms(model)
    if not modules:
        raise ModelError("the model has no BatchNorm layers with running statistics")
    with preserved(model, modules) as outcome, torch.inference_mode():
        if not exported:  # an exported program runs in its exported (eval) mode only
            model.eval()
        layers = execution_order(runner, modules)
        before = _current(layers)
        passes, changes = _run_method(runner, layers, method, sweeps)
        consistency = _consistency(runner, layers) if verify else None
        if consistency is not None:
            passes.append(consistency[1])
        outcome.succeeded = True
    after = _current(layers)
    return Estimate(
        method=method,
        layers=tuple(LayerEstimate(lay.name, before[lay.name], after[lay.name]) for lay in layers),
        unreached=tuple(name for name in modules if name not in before),
        batches=distributed.total(passes[0].batches),
        samples=distributed.total(passes[0].samples),
        passes=tuple(passes),
        sweep_changes=tuple(changes),
        consistency=consistency[0] if consistency is not None else None,
    )


def _run_method(
    runner: Runner, layers: list[BatchNormLayer], method: Method, sweeps: int
) -> tuple[list[PassRecord], list[float]]:
    if method is Method.TRAIN_AVERAGE:
        return _train_average(runner, layers), []
    passes, changes = [], []
    for sweep in range(1, sweeps + 1):
        previous = _current(layers)
        passes += _sweep(runner, layers, sweep)
        if sweep > 1:
            changes.append(_largest_change(previous, _current(layers)))
    return passes, changes


def _consistency(
    runner: Runner, layers: list[BatchNormLayer]
) -> tuple[dict[str, float], PassRecord]:
    """After recalibration: how far each layer's eval-mode input moments are from its stats."""
    measured, record = _measure(runner, "verify", layers)
    stored = _current(layers)
    eps = {layer.name: float(layer.module.eps) for layer in layers}
    return {n: mismatch(measured[n], stored[n], eps[n]) for n in measured}, record
