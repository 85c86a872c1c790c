"""What the runtimes of torch models share: their BatchNorm modules, inputs and modes
(`TorchRunner`), and their statistics in buffers, written back (`TorchStatistics`).

Eager modules, TorchScript modules and torch.export programs all keep a BatchNorm
layer's statistics in `running_mean`, `running_var` and `num_batches_tracked` buffers of
some object (a module, or `ExportedBatchNorm` standing for a program's call). New values
are copied into those buffers in place, in their own dtype, so every graph that reads
them sees the change; the checkpoint is written from the same buffers, by key
(`writers.checkpoint`), so only their bytes change in the file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnstat.errors import ModelError
from bnstat.execution.model import (
    Capture,
    Layer,
    Model,
    Origin,
    Outcome,
    Probe,
    Segment,
    Takes,
)
from bnstat.execution.moments import Moments
from bnstat.execution.schedule import SegmentSpec
from bnstat.readers.base import RawCheckpoint
from bnstat.stages.find_state_dicts import StateDict
from bnstat.writers.checkpoint import write_checkpoint
from bnstat.writers.target import Patch

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


@contextmanager
def batchnorm_training(modules: dict[str, Any], cumulative: bool) -> Iterator[None]:
    """BatchNorm modules in training mode; `cumulative` also sets momentum=None and resets
    their statistics, so PyTorch averages every call. Modes and momenta come back."""
    momenta = {name: module.momentum for name, module in modules.items()}
    modes = {name: module.training for name, module in modules.items()}
    for module in modules.values():
        if cumulative:
            module.reset_running_stats()
            module.momentum = None
        module.train()
    try:
        yield
    finally:
        for name, module in modules.items():
            module.train(modes[name])
            if cumulative:
                module.momentum = momenta[name]


class TorchRunner(ABC):
    """The part of running a torch model that does not depend on how it is run; each
    adapter adds how it finds its layers, captures, cuts and probes its graph, and trains.

    `holders` maps each layer name to the object whose buffers hold its statistics.
    """

    evaluates = True  # whether `evaluating()` puts the model in eval mode

    def __init__(
        self,
        model: nn.Module,
        holders: dict[str, Any],
        device: torch.device,
        origin: Origin,
        input_key: str | None,
    ) -> None:
        self.model, self.holders = model, holders
        self.origin, self.accumulate_on = origin, device
        self.input_key = input_key
        self.takes = Takes(channels=first_input_channels(model))
        self.layers: tuple[Layer, ...] = ()
        self.unreached: tuple[str, ...] = ()

    def model_input(self, batch: torch.Tensor) -> Any:
        """The batch on the model's device, as `{key: batch}` if the forward takes a dict."""
        batch = batch.to(self.accumulate_on, non_blocking=True)
        return {self.input_key: batch} if self.input_key else batch

    @abstractmethod
    def prepare(self, batch: torch.Tensor) -> None: ...

    @abstractmethod
    def capture(self) -> Capture: ...

    @abstractmethod
    def segment(self, spec: SegmentSpec) -> Segment: ...

    @abstractmethod
    def probe(self, layers: Sequence[str]) -> Probe: ...

    @abstractmethod
    def training(self) -> AbstractContextManager[bool]: ...

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (where the model has one) and no autograd; modes kept."""
        modes = [(module, module.training) for module in self.model.modules()]
        try:
            with torch.inference_mode():
                if self.evaluates:
                    self.model.eval()
                yield
        finally:
            for module, training in modes:
                module.training = training


def origin_of(kind: str, device: torch.device, checkpoint: Checkpoint | None) -> Origin:
    """What runs a torch model, for the report; the source is the model's path in its file."""
    return Origin(kind, checkpoint.state.name if checkpoint is not None else None, str(device))


def torch_model(runner: TorchRunner, checkpoint: Checkpoint | None) -> Model:
    """A torch runner with the statistics in its layers' buffers, written into `checkpoint`."""
    return Model(runner, TorchStatistics(runner.holders, checkpoint))


class TorchStatistics:
    """The statistics in the buffers of `holders`, written back into `checkpoint`'s file."""

    def __init__(self, holders: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        self.holders, self.checkpoint = holders, checkpoint

    def read(self, layer: str) -> Moments:
        holder = self.holders[layer]
        count = getattr(holder, "num_batches_tracked", None)
        return Moments(
            holder.running_mean.detach().to("cpu", torch.float64).clone(),
            holder.running_var.detach().to("cpu", torch.float64).clone(),
            int(count) if count is not None else 0,
        )

    def set(self, layer: str, moments: Moments, batches: int) -> None:
        holder = self.holders[layer]
        holder.running_mean.copy_(moments.mean.to(holder.running_mean))
        holder.running_var.copy_(moments.var.to(holder.running_var))
        if getattr(holder, "num_batches_tracked", None) is not None:
            holder.num_batches_tracked.fill_(batches)

    @contextmanager
    def kept(self) -> Iterator[Outcome]:
        """The buffers as they were, unless the block succeeded."""
        saved = {
            (name, buffer): getattr(holder, buffer).detach().clone()
            for name, holder in self.holders.items()
            for buffer in BUFFERS
            if isinstance(getattr(holder, buffer, None), torch.Tensor)
        }
        outcome = Outcome()
        try:
            yield outcome
        finally:
            if not outcome.succeeded:
                with torch.no_grad():
                    for (name, buffer), value in saved.items():
                        getattr(self.holders[name], buffer).copy_(value)

    def write(self, output: Path, in_place: bool) -> None:
        """The checkpoint with every layer's buffers as they are now."""
        if self.checkpoint is None:
            raise ModelError("a model built in memory has no checkpoint file to write")
        patches = []
        for layer in self.holders:
            current = self.read(layer)
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
