"""Leave the model as it was found: modes, momenta and, on failure, the statistics.

Recalibration flips layers between train and eval mode, may set momenta to None (the
train-mode average) and rewrites buffers. This context manager records every module's
`training` flag, every eager BatchNorm's momentum and every running buffer, and restores
modes and momenta in `finally`; buffers are restored too unless the caller marks the run
as successful.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class Outcome:
    """Set `succeeded` to keep the new statistics when the block exits."""

    succeeded = False


@contextmanager
def preserved(model: nn.Module, batchnorms: dict[str, Any]) -> Iterator[Outcome]:
    modes = [(module, module.training) for module in model.modules()]
    momenta = {
        name: bn.momentum
        for name, bn in batchnorms.items()
        if not isinstance(bn, torch.jit.ScriptModule)
    }
    buffers = {
        (name, buffer): getattr(bn, buffer).detach().clone()
        for name, bn in batchnorms.items()
        for buffer in BUFFERS
        if isinstance(getattr(bn, buffer, None), torch.Tensor)
    }
    outcome = Outcome()
    try:
        yield outcome
    finally:
        for module, training in modes:
            module.training = training
        for name, momentum in momenta.items():
            batchnorms[name].momentum = momentum
        if not outcome.succeeded:
            with torch.no_grad():
                for (name, buffer), value in buffers.items():
                    getattr(batchnorms[name], buffer).copy_(value)
