"""What recalibration needs from whatever runs the model: one interface, one adapter each.

A torch module (`--arch`, a pickled module), a TorchScript archive, a torch.export
program and an ONNX model are run by different machinery, but the estimators ask the
same things of each (`runtimes/` has one adapter per kind, chosen by checkpoint format):

- its BatchNorm layers in execution order, with their eps;
- its graph as the scheduler sees it (`schedule.Op`s), and a runnable segment for each
  piece of the plan, so that an exact sweep costs one forward pass;
- a probe that runs whole batches and hands over the inputs of chosen layers (the
  fallback sweep, the verification pass, the data diagnosis);
- the train-mode average, where the runtime can train;
- the statistics it computes with, which the estimators replace layer by layer, rounded
  to the dtype the file stores;
- a way to write them back into the checkpoint, changing nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from bnstat.recalibrate.accumulator import Moments
from bnstat.recalibrate.data.options import DataOptions
from bnstat.recalibrate.passes import Passes
from bnstat.recalibrate.schedule import Op, SegmentSpec
from bnstat.report.recalibration import PassRecord


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


class Probe(Protocol):
    def run(self, model_input: Any) -> Iterator[tuple[str, torch.Tensor]]:
        """Run one batch; yield (layer, input) for every call of the chosen layers."""

    def close(self) -> None: ...


class Segment(Protocol):
    def run(self, values: Sequence[Any]) -> Sequence[Any]:
        """Segment 0 gets `[model_input]`; the others their `SegmentSpec.inputs`, in order.
        Returns the values of `SegmentSpec.outputs`, in order."""


class Outcome:
    """Set `succeeded` to keep the new statistics when `Runtime.running()` exits."""

    succeeded = False


class Runtime(Protocol):
    @property
    def origin(self) -> str:
        """Where the model came from, for the report."""

    @property
    def source(self) -> str | None:
        """Which model of the file (its path in the file), if it holds several."""

    @property
    def device(self) -> str:
        """Where it runs, for the report."""

    @property
    def accumulate_on(self) -> torch.device:
        """Where its BatchNorm inputs arrive, to sum them there."""

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers the forward pass reaches, in execution order (after `prepare`)."""

    @property
    def unreached(self) -> tuple[str, ...]:
        """Layers with statistics that the forward pass never calls."""

    @property
    def input_channels(self) -> int | None:
        """What the model takes, to decode images to match."""

    @property
    def exact_batch(self) -> int | None:
        """The only batch size a program exported for one can run."""

    def prepare(self, batch: torch.Tensor) -> None:
        """Find the layers (and the graph), given a first batch of samples to try."""

    def capture(self) -> Capture: ...

    def segment(self, spec: SegmentSpec) -> Segment: ...

    def probe(self, layers: Sequence[str]) -> Probe: ...

    def model_input(self, batch: torch.Tensor) -> Any:
        """What the model is called with for a batch of samples (on its device)."""

    def statistics(self, layer: str) -> Moments:
        """The mean and variance the layer normalises with now, as float64 on the CPU."""

    def set_statistics(self, layer: str, moments: Moments, batches: int) -> None:
        """Normalise with `moments` from now on (as the file's dtype holds them)."""

    def running(self) -> AbstractContextManager[Outcome]:
        """Modes and momenta kept, no autograd; the old statistics back unless succeeded."""

    def train_average(self, passes: Passes) -> tuple[dict[str, Moments], PassRecord]:
        """One pass with BatchNorm in training mode: per layer, the average over its calls
        of each call's batch mean and unbiased variance (count: the calls)."""

    def write(self, output: Path, in_place: bool) -> None:
        """Write the checkpoint with the current statistics to `output`, atomically."""


def fitted_options(runtime: Runtime, options: DataOptions, channels: int | None) -> DataOptions:
    """The data options as the model takes them: images decoded to `channels` (else the
    channels its first layer takes, else 3), batches of the size a program was exported
    for, if it was exported for one."""
    return replace(
        options,
        channels=channels or runtime.input_channels or 3,
        batch_size=runtime.exact_batch or options.batch_size,
    )
