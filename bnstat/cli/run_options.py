"""The options that say how to build a model and load data, shared by every command that
runs one: `recalibrate`, and `inspect`/`check` with `--data`.

They are declared once, here: `with_run_options` gives a command one typer option per
field of `ModelFlags` and `DataFlags` (typer reads options from a function's signature)
and hands the command their values as one `RunFlags`, which builds the library's
request and can say itself back as command-line arguments (a finding's fix names the
`recalibrate` command that repairs what `check --data` found).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from bnstat.cli.app import option
from bnstat.errors import MissingDependencyError, UsageError
from bnstat.report.verdict import Result

if TYPE_CHECKING:
    from bnstat.execution.data import DataOptions
    from bnstat.execution.model_options import ModelSpec, RunRequest

ArchOpt = Annotated[
    str | None,
    option(
        "Model factory for a state dict: package.module:callable or file.py:callable.",
        metavar="MODULE:FACTORY",
    ),
]
ArchKwargsOpt = Annotated[str, option("JSON keyword arguments for --arch.", metavar="JSON")]
SourceOpt = Annotated[
    str | None, option("Which model of a file holding several (e.g. ema).", metavar="NAME")
]
UnsafeOpt = Annotated[
    bool, option("Allow unpickling a whole module: runs code from the file.", "--unsafe-load")
]
DeviceOpt = Annotated[str, option("Where the model runs.", metavar="<auto|cpu|cuda|cuda:N|mps>")]
InputKeyOpt = Annotated[
    str | None,
    option("Call the model with {KEY: batch} instead of the batch.", metavar="KEY"),
]
ImageSizeOpt = Annotated[str | None, option("Final image size: N or HxW.", metavar="SIZE")]
ResizeOpt = Annotated[
    int | None,
    option("Resize the shorter side to N before cropping to --image-size.", metavar="N"),
]
MeanOpt = Annotated[
    str,
    option(
        "Per-channel mean to subtract once images are scaled to 0..1, comma-separated.",
        metavar="FLOATS",
    ),
]
StdOpt = Annotated[str, option("Per-channel std to divide by, comma-separated.", metavar="FLOATS")]
GrayscaleOpt = Annotated[bool, option("Decode images to one channel.", "--grayscale")]
ChannelsOpt = Annotated[
    int | None,
    option(
        "Decode images to 1, 3 or 4 channels [default: what the first convolution takes].",
        metavar="<1|3|4>",
    ),
]
MaxSamplesOpt = Annotated[
    int | None,
    option("Use at most this many samples (a seeded random subset).", metavar="N"),
]
SeedOpt = Annotated[int, option("Seed for the sample order and subset.", metavar="N")]
BatchSizeOpt = Annotated[int, option("Samples per forward pass.", metavar="N")]
WorkersOpt = Annotated[
    int | None, option("Image decoding processes [default: min(4, CPUs)].", metavar="N")
]
ProgressOpt = Annotated[bool, option("Progress bars while the model runs (on a terminal only).")]
CacheOpt = Annotated[
    int | None,
    option(
        "Memory for decoded data and cached activations; beyond it they go to disk "
        "[default: half of the memory available].",
        metavar="MB",
        minimum=0,
    ),
]


def require_torch(command: str) -> None:
    """Running a model needs torch and Pillow: the `torch` extra."""
    for package in ("torch", "PIL"):
        try:
            __import__(package)
        except ImportError:
            name = "Pillow" if package == "PIL" else package
            raise MissingDependencyError(name, "torch", command) from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arguments(flags: Any, defaults: Any) -> list[str]:
    """The options whose values differ from the defaults, as a command line says them."""
    words: list[str] = []
    for item in fields(flags):
        value, default = getattr(flags, item.name), getattr(defaults, item.name)
        if value == default:
            continue
        if isinstance(value, bool):
            words.append(_flag(item.name))
        else:
            words += [_flag(item.name), str(value)]
    return words


@dataclass(frozen=True)
class ModelFlags:
    """How to build the model: `--arch`, `--arch-kwargs`, `--source`, `--unsafe-load`, ..."""

    arch: ArchOpt = None
    arch_kwargs: ArchKwargsOpt = "{}"
    source: SourceOpt = None
    unsafe_load: UnsafeOpt = False
    input_key: InputKeyOpt = None
    device: DeviceOpt = "auto"

    def spec(self) -> ModelSpec:
        from bnstat.execution.model_options import ModelSpec

        return ModelSpec(self.arch, _json_object(self.arch_kwargs), self.unsafe_load, self.source)


@dataclass(frozen=True)
class DataFlags:
    """How to load the data: sizes, normalisation, channels, selection, batching, memory."""

    image_size: ImageSizeOpt = None
    resize: ResizeOpt = None
    mean: MeanOpt = "0"
    std: StdOpt = "1"
    grayscale: GrayscaleOpt = False
    channels: ChannelsOpt = None
    max_samples: MaxSamplesOpt = None
    seed: SeedOpt = 0
    batch_size: BatchSizeOpt = 32
    workers: WorkersOpt = None
    cache_mb: CacheOpt = None

    def options(self) -> DataOptions:
        from bnstat.execution.data import DataOptions, parse_floats, parse_image_size

        return DataOptions(
            image_size=parse_image_size(self.image_size) if self.image_size else None,
            resize=self.resize,
            mean=parse_floats(self.mean),
            std=parse_floats(self.std),
            max_samples=self.max_samples,
            seed=self.seed,
            batch_size=self.batch_size,
            workers=min(4, os.cpu_count() or 1) if self.workers is None else self.workers,
            cache_bytes=None if self.cache_mb is None else self.cache_mb * 2**20,
        )

    @property
    def channel_count(self) -> int | None:
        """The channels asked for (None: what the model takes)."""
        return 1 if self.grayscale else self.channels


@dataclass(frozen=True)
class Display:
    """How a run shows itself: progress bars on a terminal, unless turned off."""

    progress: ProgressOpt = True


@dataclass(frozen=True)
class RunFlags:
    """The model and data options of one command, and how it shows its progress."""

    model: ModelFlags
    loading: DataFlags
    display: Display = Display()

    def request(self, data: Path) -> RunRequest:
        """The library's request to run the model on the data in `data`."""
        from bnstat.execution.model_options import ModelRequest, RunRequest

        model = self.model
        return RunRequest(
            data=data,
            model=ModelRequest(model.spec(), model.device, model.input_key),
            options=self.loading.options(),
            channels=self.loading.channel_count,
        )

    def arguments(self) -> list[str]:
        """The options given, as a command line says them."""
        return [
            *_arguments(self.model, ModelFlags()),
            *_arguments(self.loading, DataFlags()),
        ]


def _parameters(flags: type[Any]) -> list[inspect.Parameter]:
    """One keyword parameter per field of a flags dataclass, typed for typer."""
    hints = get_type_hints(flags, include_extras=True)
    return [
        inspect.Parameter(
            item.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=item.default,
            annotation=hints[item.name],
        )
        for item in fields(flags)
        if item.default is not MISSING
    ]


RUN_PARAMETERS = (*_parameters(ModelFlags), *_parameters(DataFlags), *_parameters(Display))
_GROUPS: tuple[type[Any], ...] = (ModelFlags, DataFlags, Display)


def _taken(values: dict[str, Any], group: type[Any]) -> Any:
    """The flags dataclass `group`, from (and out of) the parsed values."""
    return group(**{item.name: values.pop(item.name) for item in fields(group)})


def with_run_options(function: Callable[..., Result]) -> Callable[..., Result]:
    """The command `function`, whose `run: RunFlags` parameter typer sees as the options
    of `ModelFlags`, `DataFlags` and `Display`, after the command's own."""
    signature = inspect.signature(function)
    hints = get_type_hints(function, include_extras=True)
    own = [
        parameter.replace(annotation=hints[name], kind=inspect.Parameter.KEYWORD_ONLY)
        for name, parameter in signature.parameters.items()
        if name != "run"
    ]
    debug = [parameter for parameter in own if parameter.name == "debug"]
    parameters = [p for p in own if p.name != "debug"] + list(RUN_PARAMETERS) + debug

    @functools.wraps(function)
    def command(**values: Any) -> Result:
        model, loading, display = (_taken(values, group) for group in _GROUPS)
        return function(**values, run=RunFlags(model, loading, display))

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=hints.get("return", Result)
    )
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


def _json_object(text: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--arch-kwargs: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UsageError("--arch-kwargs: expected a JSON object of keyword arguments")
    return value
