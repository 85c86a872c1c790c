"""What the user asks of the calibration data: sizes, normalisation, selection, batching."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnstat.errors import ArgumentError, DataError

MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class DataOptions:
    """How to find, decode, select and batch calibration samples."""

    image_size: tuple[int, int] | None = None  # final H, W: crop after `resize`, else resize
    resize: int | None = None  # shorter side to this, keeping the aspect ratio
    mean: tuple[float, ...] = (0.0,)  # images only: (x / range - mean) / std per channel
    std: tuple[float, ...] = (1.0,)
    channels: int = 3  # 1 = grayscale ("L"), 3 = RGB, 4 = RGBA
    max_samples: int | None = None  # taken after a seeded shuffle of the files
    seed: int = 0
    batch_size: int = 32
    workers: int = 0  # DataLoader decoding processes; 0 = the main process
    cache_bytes: int | None = None  # memory budget (None: half of what is available)


def describe_fit(options: DataOptions) -> str:
    """How images are brought to one size, in words."""
    if options.resize is not None:
        crop = options.image_size
        cropped = f", centre crop {crop[0]}x{crop[1]}" if crop else ""
        return f"shorter side resized to {options.resize}{cropped}"
    if options.image_size is not None:
        return f"resized to {options.image_size[0]}x{options.image_size[1]}"
    return "at their own size"


def parse_image_size(text: str) -> tuple[int, int]:
    """`"224"` -> (224, 224); `"32x48"` -> (32, 48), height by width."""
    try:
        sizes = [int(part) for part in text.lower().split("x")]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise DataError(f"invalid image size {text!r}: expected N or HxW, e.g. 224 or 32x48")
    return sizes[0], sizes[-1]


def parse_floats(text: str) -> tuple[float, ...]:
    """`"0.485,0.456,0.406"` -> (0.485, 0.456, 0.406)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as err:
        raise DataError(
            f"invalid number list {text!r}: expected comma-separated numbers, e.g. 0.5,0.5,0.5"
        ) from err
    if not all(np.isfinite(values)):
        raise DataError(f"invalid number list {text!r}: every value must be finite")
    return values


def check_options(options: DataOptions, rank: int, world_size: int) -> None:
    channels = options.channels
    checks = (
        (channels in MODES, "channels", f"must be 1, 3 or 4, not {channels}"),
        (all(size >= 1 for size in options.image_size or ()), "image_size", "must be positive"),
        (options.resize is None or options.resize >= 1, "resize", "must be positive"),
        (len(options.mean) in (1, channels), "mean", f"needs {_value_counts(channels)}"),
        (len(options.std) in (1, channels), "std", f"needs {_value_counts(channels)}"),
        (0.0 not in options.std, "std", "must not contain 0"),
        (options.batch_size >= 1, "batch_size", "must be at least 1"),
        (
            options.max_samples is None or options.max_samples >= 1,
            "max_samples",
            "must be at least 1",
        ),
        (options.workers >= 0, "workers", "must not be negative"),
    )
    for ok, argument, problem in checks:
        if not ok:
            raise ArgumentError(argument, problem)
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is outside a world of size {world_size}")


def _value_counts(channels: int) -> str:
    """How many values a per-channel option takes: one, or one per channel."""
    return "1 value" if channels == 1 else f"1 or {channels} values"
