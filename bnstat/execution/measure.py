"""What BatchNorm layers receive: their input moments over a pass, and a model run on data.

`LayerSums` adds up, channel by channel in float64 (`moments.ChannelMoments`), the inputs
of some layers over every batch of a pass; `measure` fills it from one probe pass in the
model's current state. The exact sweep measures each front this way (or through its
segments), the verification pass every layer at once.

`measure_model` is the data diagnosis: one pass in eval mode measures every layer's input
with the statistics the model holds. Nothing is changed or written: the stored
statistics are what is being tested (`data_fit` and rule BN014 judge them).
`measure_on_data` runs it for `inspect`/`check --data`: the model is built as
`recalibrate` builds it (the same runtimes, from the same options) and the data is
loaded as `recalibrate` loads it; `bnstat.diagnose` runs it on a module and batches in
memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from bnstat.data_fit import Measured
from bnstat.execution.batches import Batch
from bnstat.execution.data import FolderData
from bnstat.execution.loop import DataLoop, Progress, Silent
from bnstat.execution.model import Layer, Model, ModelRunner, StatisticsStore, fitted_options
from bnstat.execution.model_options import RunRequest
from bnstat.execution.moments import ChannelMoments, Moments
from bnstat.execution.runtimes import RUN_AS_THEY_ARE, open_model
from bnstat.phases import reached
from bnstat.readers.base import RawCheckpoint
from bnstat.report.recalibration import PassRecord, Unreadable


class LayerSums:
    """Input moments of some layers, channel by channel, over every batch of a pass."""

    def __init__(self, layers: Sequence[Layer], names: Iterable[str], device: torch.device) -> None:
        channels = {layer.name: layer.channels for layer in layers}
        self.moments = {name: ChannelMoments(channels[name], device) for name in names}

    def add(self, found: Iterable[tuple[str, torch.Tensor]]) -> None:
        for name, values in found:
            self.moments[name].update(values)

    def compute(self) -> dict[str, Moments]:
        """Mean and unbiased variance per layer, over every process of a distributed run."""
        for moments in self.moments.values():
            moments.synchronize()
        return {name: moments.compute() for name, moments in self.moments.items()}

    def set_statistics(self, store: StatisticsStore, batches: int) -> None:
        """Every layer normalises with its sums from now on."""
        for name, result in self.compute().items():
            result.require_variance(name)
            result.require_finite(name)
            store.set(name, result, batches)


class Observer(Protocol):
    """Told of every batch of a measuring pass and of what was measured on it."""

    def keep(self, index: int, batch: Batch) -> None: ...
    def saw(self, index: int, found: Sequence[tuple[str, torch.Tensor]]) -> None: ...


def measure(
    runner: ModelRunner,
    names: Sequence[str],
    loop: DataLoop,
    label: str,
    observer: Observer | None = None,
) -> tuple[LayerSums, PassRecord]:
    """Input moments of the layers `names` from one probe pass in the model's current state."""
    sums = LayerSums(runner.layers, names, runner.accumulate_on)
    probe = runner.probe(names)

    def step(index: int, batch: torch.Tensor) -> None:
        found = list(probe.run(runner.model_input(batch)))
        sums.add(found)
        if observer is not None:
            observer.keep(index, batch)
            observer.saw(index, found)

    try:
        record = loop.over_data(label, step)
    finally:
        probe.close()
    return sums, record


SHOWN_OPTIONS = ("image_size", "resize", "mean", "std", "channels", "max_samples", "batch_size")


@dataclass(frozen=True)
class Measurement:
    """Per layer (by name): its measured input and eps; the layers in execution order."""

    measured: dict[str, Measured]
    eps: dict[str, float]
    order: tuple[str, ...]
    samples: int
    origin: str  # where the model came from
    options: tuple[tuple[str, Any], ...] = ()  # the data options in effect, by name
    input: str = ""  # what the model was fed, in words
    unreadable: tuple[Unreadable, ...] = ()  # data files and folders skipped
    warnings: tuple[str, ...] = ()  # about the data used

    def renamed(self, name: Callable[[str], str]) -> Measurement:
        """The same measurement with every layer called `name(layer)`."""
        return replace(
            self,
            measured={name(layer): value for layer, value in self.measured.items()},
            eps={name(layer): value for layer, value in self.eps.items()},
            order=tuple(name(layer) for layer in self.order),
        )


def measure_model(model: Model, data: Iterable[Batch], progress: Progress | None) -> Measurement:
    """Every layer's input over one eval-mode pass with the statistics the model has now
    (nothing is changed); the origin, options and input are for the caller to fill in."""
    runner = model.runner
    loop = DataLoop(data, progress or Silent(), runner.takes.exact_batch)
    with runner.evaluating():
        runner.prepare(loop.first_batch())
        names = [layer.name for layer in runner.layers]
        sums, record = measure(runner, names, loop, "measure")
        moments = sums.compute()
    for name, result in moments.items():
        result.require_variance(name)
    return Measurement(
        measured={
            name: Measured(result.mean.numpy(), result.var.numpy(), record.samples)
            for name, result in moments.items()
        },
        eps={layer.name: layer.eps for layer in runner.layers},
        order=tuple(names),
        samples=record.samples,
        origin=runner.origin.kind,
    )


def measure_on_data(
    raw: RawCheckpoint, source: str | None, request: RunRequest, progress: Progress | None = None
) -> Measurement:
    """Run the model in `raw` (its model `source`) on the data once; see the module doc."""
    reached("start")
    spec = request.model.spec
    spec = replace(spec, source=source if source is not None else spec.source)
    if raw.format in RUN_AS_THEY_ARE:  # a folder may mix them with state dicts for --arch
        spec = replace(spec, arch=None, arch_kwargs={})
    model = open_model(raw, replace(request.model, spec=spec))
    options = fitted_options(model.runner.takes, request.options, request.channels)
    data = FolderData(request.data, options, device=model.runner.accumulate_on)
    measurement = measure_model(model, data, progress)
    shown = tuple((name, getattr(options, name)) for name in SHOWN_OPTIONS)
    return replace(
        measurement, options=shown, input=data.describe(), unreadable=tuple(data.unreadable),
        warnings=tuple(data.warnings),
    )  # fmt: skip
