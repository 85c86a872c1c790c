"""The options that say how to build a model and load data, shared by every command that
runs one: `recalibrate`, and `inspect`/`check` with `--data`.

Each command lists these parameters (typer reads them from its signature) and hands
their values to `ModelFlags` and `DataFlags`, which build the library's requests and can
say them back as command-line arguments (a finding's fix names the `recalibrate` command
that repairs what `check --data` found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any

from bnstat.cli.app import option
from bnstat.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from bnstat.recalibrate.data import DataOptions
    from bnstat.recalibrate.model_source import ModelSpec

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
    option("Per-channel mean to subtract after /255, comma-separated.", metavar="FLOATS"),
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
CacheOpt = Annotated[
    int,
    option(
        "Memory for decoded data and cached activations; beyond it they go to disk.",
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

    arch: str | None = None
    arch_kwargs: str = "{}"
    source: str | None = None
    unsafe_load: bool = False
    input_key: str | None = None
    device: str = "auto"

    def spec(self) -> ModelSpec:
        from bnstat.recalibrate.model_source import ModelSpec

        return ModelSpec(self.arch, _json_object(self.arch_kwargs), self.unsafe_load, self.source)

    def arguments(self) -> list[str]:
        return _arguments(self, ModelFlags())


@dataclass(frozen=True)
class DataFlags:
    """How to load the data: sizes, normalisation, channels, selection, batching, memory."""

    image_size: str | None = None
    resize: int | None = None
    mean: str = "0"
    std: str = "1"
    grayscale: bool = False
    channels: int | None = None
    max_samples: int | None = None
    seed: int = 0
    batch_size: int = 32
    workers: int | None = None
    cache_mb: int = 2048

    def options(self) -> DataOptions:
        from bnstat.recalibrate.data import DataOptions, parse_floats, parse_image_size

        return DataOptions(
            image_size=parse_image_size(self.image_size) if self.image_size else None,
            resize=self.resize,
            mean=parse_floats(self.mean),
            std=parse_floats(self.std),
            max_samples=self.max_samples,
            seed=self.seed,
            batch_size=self.batch_size,
            workers=min(4, os.cpu_count() or 1) if self.workers is None else self.workers,
            cache_bytes=self.cache_mb * 2**20,
        )

    @property
    def channel_count(self) -> int | None:
        """The channels asked for (None: what the model takes)."""
        return 1 if self.grayscale else self.channels

    def arguments(self) -> list[str]:
        return _arguments(self, DataFlags())


def _json_object(text: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--arch-kwargs: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UsageError("--arch-kwargs: expected a JSON object of keyword arguments")
    return value
