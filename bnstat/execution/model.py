"""What the estimators ask of a model, in two small interfaces: running it, and its statistics.

A torch module (`--arch`, a pickled module, a module in memory), a TorchScript archive, a
torch.export program and an ONNX model are run by different machinery (`runtimes/` has
one adapter each), but the estimators and the data diagnosis ask the same of each:

- `ModelRunner` runs it: its BatchNorm layers in execution order, its graph as the
  scheduler sees it (`schedule.Op`s), a runnable segment for each piece of a plan (so an
  exact sweep costs one forward pass), a probe that hands over the inputs of chosen
  layers, and the modes it runs in (eval mode; BatchNorm in training mode where the
  model can train).
- `StatisticsStore` holds the statistics it computes with: read a layer's, set new ones
  (rounded to the dtype the file stores), keep them or put the old ones back, and write
  them into the checkpoint, changing nothing else.

An opened model is one of each (`Model`); the two may share state (a torch module's
buffers are both what it runs with and what is written).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from bnstat.errors import ModelError
from bnstat.execution.batches import Batch
from bnstat.execution.data.options import DataOptions
from bnstat.execution.moments import Moments
from bnstat.execution.schedule import Op, SegmentSpec


@dataclass(frozen=True)
class Layer:
    """A BatchNorm layer the forward pass reaches."""

    name: str
    channels: int
    eps: float


@dataclass(frozen=True)
class Capture:
    """A model's graph for the scheduler.

    `refused` says why it cannot be run in segments (None: it can); the ops still give
    the layers' fronts for the fallback sweep. `how` names what captured it.
    """

    ops: tuple[Op, ...]
    how: str
    refused: str | None = None


@dataclass(frozen=True)
class Origin:
    """What runs the model, for the report: its kind (`arch`, `torchscript`, ...), which
    model of the file (its path in the file, when the file holds several) and the device."""

    kind: str
    source: str | None
    device: str


@dataclass(frozen=True)
class Takes:
    """What the model takes: the channels of its input (to decode images to match), and
    the only batch size a program exported for one can run."""

    channels: int | None = None
    exact_batch: int | None = None


class Probe(Protocol):
    def run(self, model_input: Any) -> Iterator[tuple[str, torch.Tensor]]:
        """Run one batch; yield (layer, input) for every call of the chosen layers."""

    def close(self) -> None: ...


class Segment(Protocol):
    def run(self, values: Sequence[Any]) -> Sequence[Any]:
        """Segment 0 gets `[model_input]`; the others their `SegmentSpec.inputs`, in order.
        Returns the values of `SegmentSpec.outputs`, in order."""


class ModelRunner(Protocol):
    origin: Origin
    takes: Takes
    accumulate_on: torch.device  # where BatchNorm inputs arrive, to sum them there

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers the forward pass reaches, in execution order (after `prepare`)."""

    @property
    def unreached(self) -> tuple[str, ...]:
        """Layers with statistics that the forward pass never calls."""

    def prepare(self, batch: Batch) -> None:
        """Find the layers (and the graph), given a first batch of samples to try."""

    def capture(self) -> Capture: ...

    def segment(self, spec: SegmentSpec) -> Segment: ...

    def probe(self, layers: Sequence[str]) -> Probe: ...

    def model_input(self, batch: Batch) -> Any:
        """What the model is called with for a batch (its tensors on its device)."""

    def evaluating(self) -> AbstractContextManager[None]:
        """Eval mode and no autograd for the block; the modes it had come back after."""

    def training(self) -> AbstractContextManager[bool]:
        """BatchNorm in training mode for the block (the rest as it is). True: the layers
        average every call's batch statistics into their own (momentum None). Raises
        `cannot_train` where the model cannot run BatchNorm in training mode."""


class Outcome:
    """Set `succeeded` to keep the new statistics when `StatisticsStore.kept()` exits."""

    succeeded = False


class StatisticsStore(Protocol):
    def read(self, layer: str) -> Moments:
        """The mean and variance the layer normalises with now, as float64 on the CPU
        (count: its batch count)."""

    def set(self, layer: str, moments: Moments, batches: int) -> None:
        """Normalise with `moments` from now on (as the file's dtype holds them)."""

    def kept(self) -> AbstractContextManager[Outcome]:
        """The statistics as they were before the block, unless it succeeded."""

    def write(self, output: Path, in_place: bool) -> None:
        """Write the checkpoint with the current statistics to `output`, atomically."""


@dataclass(frozen=True)
class Model:
    """An opened model: what runs it and what holds its statistics."""

    runner: ModelRunner
    store: StatisticsStore


def cannot_train(why: str) -> ModelError:
    """The one refusal of the train-average method, with the model's reason."""
    return ModelError(
        f"the train-average method needs BatchNorm in training mode, and {why}: "
        "use the exact method"
    )


def fitted_options(takes: Takes, options: DataOptions, channels: int | None) -> DataOptions:
    """The data options as the model takes them: images decoded to `channels` (else the
    channels its first layer takes, else 3), batches of the size a program was exported
    for, if it was exported for one."""
    return replace(
        options,
        channels=channels or takes.channels or 3,
        batch_size=takes.exact_batch or options.batch_size,
    )
