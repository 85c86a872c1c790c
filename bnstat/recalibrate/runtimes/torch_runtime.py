"""What the runtimes of torch models share: their BatchNorm modules, statistics in buffers,
inputs, modes, and writing back.

Eager modules, TorchScript modules and torch.export programs all keep a BatchNorm
layer's statistics in `running_mean`, `running_var` and `num_batches_tracked` buffers of
some object (a module, or `ExportedBatchNorm` standing for a program's call). New values
are copied into those buffers in place, in their own dtype, so every graph that reads
them sees the change; the checkpoint is written from the same buffers, by key
(`writer.write_checkpoint`), so only their bytes change in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnstat.readers.base import RawCheckpoint
from bnstat.recalibrate.accumulator import Moments
from bnstat.recalibrate.runtime import Layer, Outcome
from bnstat.recalibrate.target import Patch
from bnstat.recalibrate.writer import write_checkpoint
from bnstat.stages.find_state_dicts import StateDict

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Checkpoint:
    """Where the statistics came from, to write them back: the file and its state dict."""

    raw: RawCheckpoint
    state: StateDict


def first_input_channels(module: nn.Module) -> int | None:
    """Channels the model's first convolution expects, to decode images to match."""
    for parameter in module.parameters():
        if parameter.dim() >= 3:
            return int(parameter.shape[1])
    return None


BATCHNORM_CLASSES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")


def batchnorm_modules(model: nn.Module) -> dict[str, Any]:
    """Every BatchNorm with running statistics, by its name in `named_modules()`.

    InstanceNorm is left out: its running statistics average per-instance statistics,
    another quantity.
    """
    found = {}
    for name, module in model.named_modules():
        scripted = isinstance(module, torch.jit.ScriptModule)
        kind = module.original_name if scripted else type(module).__name__
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm) or kind in BATCHNORM_CLASSES
        if is_bn and getattr(module, "running_mean", None) is not None:
            found[name] = module
    return found


class TorchRuntime:
    """The part of a torch runtime that does not depend on how the model is run.

    `holders` maps each layer name to the object whose buffers hold its statistics.
    """

    exact_batch: int | None = None
    evaluates = True  # whether `running()` puts the model in eval mode

    def __init__(
        self,
        model: nn.Module,
        holders: dict[str, Any],
        device: torch.device,
        checkpoint: Checkpoint | None,
        input_key: str | None,
    ) -> None:
        self.model, self.holders, self.checkpoint = model, holders, checkpoint
        self.device, self.accumulate_on = str(device), device
        self.input_key = input_key
        self.source = checkpoint.state.name if checkpoint is not None else None
        self.input_channels = first_input_channels(model)
        self.layers: tuple[Layer, ...] = ()
        self.unreached: tuple[str, ...] = ()

    def model_input(self, batch: torch.Tensor) -> Any:
        """The batch on the model's device, as `{key: batch}` if the forward takes a dict."""
        batch = batch.to(self.accumulate_on, non_blocking=True)
        return {self.input_key: batch} if self.input_key else batch

    def statistics(self, layer: str) -> Moments:
        holder = self.holders[layer]
        count = getattr(holder, "num_batches_tracked", None)
        return Moments(
            holder.running_mean.detach().to("cpu", torch.float64).clone(),
            holder.running_var.detach().to("cpu", torch.float64).clone(),
            int(count) if count is not None else 0,
        )

    def set_statistics(self, layer: str, moments: Moments, batches: int) -> None:
        holder = self.holders[layer]
        holder.running_mean.copy_(moments.mean.to(holder.running_mean))
        holder.running_var.copy_(moments.var.to(holder.running_var))
        if getattr(holder, "num_batches_tracked", None) is not None:
            holder.num_batches_tracked.fill_(batches)

    @contextmanager
    def running(self) -> Iterator[Outcome]:
        """Modes kept, buffers restored unless the run succeeded, no autograd, eval mode."""
        modes = [(module, module.training) for module in self.model.modules()]
        saved = {
            (name, buffer): getattr(holder, buffer).detach().clone()
            for name, holder in self.holders.items()
            for buffer in BUFFERS
            if isinstance(getattr(holder, buffer, None), torch.Tensor)
        }
        outcome = Outcome()
        try:
            with torch.inference_mode():
                if self.evaluates:
                    self.model.eval()
                yield outcome
        finally:
            for module, training in modes:
                module.training = training
            if not outcome.succeeded:
                with torch.no_grad():
                    for (name, buffer), value in saved.items():
                        getattr(self.holders[name], buffer).copy_(value)

    def write(self, output: Path, in_place: bool) -> None:
        """The checkpoint with every layer's buffers as they are now."""
        assert self.checkpoint is not None, "a model built in memory has no file to write"
        patches = []
        for layer in self.holders:
            current = self.statistics(layer)
            values = {
                "running_mean": current.mean.numpy(),
                "running_var": current.var.numpy(),
                "num_batches_tracked": np.array(float(current.count)),
            }
            for leaf, new in values.items():
                key = f"{layer}.{leaf}" if layer else leaf
                tensor = self.checkpoint.state.tensors.get(key)
                if tensor is not None:
                    patches.append(Patch(key, tensor, new))
        state = self.checkpoint.state
        write_checkpoint(self.checkpoint.raw, state, patches, output, in_place)
