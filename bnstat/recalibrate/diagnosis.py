"""What every BatchNorm layer receives on real data, with the statistics stored in the file.

Behind `inspect`/`check --data`: the model is built as `recalibrate` builds it (the same
runtimes, from the same options), the data is loaded as `recalibrate` loads it, and one
pass in eval mode, through the runtime's probe, sums the float64 moments of every
layer's input at once. Nothing is changed or written: the stored statistics are what is
being tested (`data_fit` and rule BN014 judge them).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from bnstat.data_fit import Measured
from bnstat.readers.base import RawCheckpoint
from bnstat.recalibrate.data import CalibrationData, DataOptions
from bnstat.recalibrate.model_source import ModelRequest, ModelSpec
from bnstat.recalibrate.passes import Passes, Progress, Silent
from bnstat.recalibrate.runtime import fitted_options
from bnstat.recalibrate.runtimes import RUN_AS_THEY_ARE, open_runtime
from bnstat.recalibrate.sweep import measure
from bnstat.remote.url import looks_like_url


@dataclass(frozen=True)
class DataRequest:
    """The data to run on and how to build the model: `recalibrate`'s options."""

    folder: Path
    options: DataOptions = field(default_factory=DataOptions)
    channels: int | None = None  # None: as many as the model takes
    model: ModelSpec = field(default_factory=ModelSpec)
    device: str = "auto"
    input_key: str | None = None
    arguments: tuple[str, ...] = ()  # the model and data options as given, for a fix command

    def recalibrate_command(self, checkpoint: str, source: str | None) -> str:
        """The `bnstat recalibrate` command line that fixes the statistics on this data."""
        path = Path(checkpoint)
        if looks_like_url(checkpoint):  # a URL's recalibrated copy is written here
            path = Path(path.name)
        output = path.with_name(f"{path.stem}.recalibrated{path.suffix}")
        chosen = ("--source", source) if source and "--source" not in self.arguments else ()
        words = ["bnstat", "recalibrate", checkpoint, "--data", str(self.folder)]
        return shlex.join([*words, "--output", str(output), *chosen, *self.arguments])


@dataclass(frozen=True)
class Diagnosis:
    """Per layer (by name): its measured input and eps; the layers in execution order."""

    measured: dict[str, Measured]
    eps: dict[str, float]
    order: tuple[str, ...]
    samples: int
    origin: str  # where the model came from
    options: DataOptions  # the data options in effect (channels, batch size, ...)
    input: str  # what the model was fed, in words


def diagnose(
    raw: RawCheckpoint, source: str | None, request: DataRequest, progress: Progress | None = None
) -> Diagnosis:
    """Run the model in `raw` (its model `source`) on the data once; see the module doc."""
    spec = replace(request.model, source=source if source is not None else request.model.source)
    if raw.format in RUN_AS_THEY_ARE:  # a folder may mix them with state dicts for --arch
        spec = replace(spec, arch=None, arch_kwargs={})
    runtime = open_runtime(raw, ModelRequest(spec, request.device, request.input_key))
    options = fitted_options(runtime, request.options, request.channels)
    data = CalibrationData(request.folder, options)
    passes = Passes(data, progress or Silent(), runtime.exact_batch)
    with runtime.running():
        runtime.prepare(passes.first_batch())
        names = [layer.name for layer in runtime.layers]
        sums, record = measure(runtime, names, passes, "measure", runtime.accumulate_on)
        moments = sums.compute()
    for name, result in moments.items():
        result.require_variance(name)
    measured = {
        name: Measured(result.mean.numpy(), result.var.numpy(), record.samples)
        for name, result in moments.items()
    }
    return Diagnosis(
        measured=measured,
        eps={layer.name: layer.eps for layer in runtime.layers},
        order=tuple(names),
        samples=record.samples,
        origin=runtime.origin,
        options=options,
        input=data.describe(),
    )
