"""The BatchNorm layers of a runnable model, in the order the forward pass reaches them.

Recalibration sweeps layers in execution order: each layer is measured after every layer
before it has its final statistics. Eager modules reveal the order through forward
pre-hooks on one batch; TorchScript modules accept no hooks, so their order is read from
the `aten::batch_norm` calls of the inlined graph (see `probes`). InstanceNorm is never
recalibrated: its running statistics average per-instance statistics, another quantity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

BATCHNORM_CLASSES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")


@dataclass(frozen=True)
class BatchNormLayer:
    """One BatchNorm module of the model and how many times a forward pass calls it."""

    name: str
    module: Any  # an eager _BatchNorm or a scripted one: both have the same attributes
    calls: int = 1

    @property
    def momentum(self) -> float | None:
        momentum = self.module.momentum
        return None if momentum is None else float(momentum)

    @property
    def channels(self) -> int:
        return int(self.module.running_mean.numel())


def is_scripted(model: nn.Module) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


def batchnorm_modules(model: nn.Module) -> dict[str, Any]:
    """Every BatchNorm with running statistics, by its name in `named_modules()`."""
    found = {}
    for name, module in model.named_modules():
        kind = module.original_name if is_scripted(module) else type(module).__name__
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm) or kind in BATCHNORM_CLASSES
        if is_bn and getattr(module, "running_mean", None) is not None:
            found[name] = module
    return found


def eager_order(model: nn.Module, modules: dict[str, Any], run: Callable[[], None]) -> list[str]:
    """Names of the BatchNorm calls made by `run()` (one forward pass), in order."""
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda _m, _i, name=name: order.append(name))
        for name, module in modules.items()
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return order


def in_execution_order(modules: dict[str, Any], calls: list[str]) -> list[BatchNormLayer]:
    """Layers ordered by first call, with their call counts; uncalled layers are left out."""
    first = list(dict.fromkeys(name for name in calls if name in modules))
    return [BatchNormLayer(name, modules[name], calls.count(name)) for name in first]
