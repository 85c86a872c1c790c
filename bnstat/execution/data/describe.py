"""What the model was fed, in words, for every report: file contents, conversions, scaling,
size and normalisation, and the shape of one sample."""

from __future__ import annotations

from collections import Counter

from bnstat.execution.data.options import MODES, DataOptions, describe_fit

DEPTHS = ("8-bit", "16-bit", "float")
RANGES = {"8-bit": "255", "16-bit": "65535"}


def describe_images(
    origins: Counter[str], depths: set[str], options: DataOptions, shape: str
) -> str:
    """`images (300 L) kept as L, at their own size, normalised as (x / 255 - 0) / 1; one
    sample is 1x8x8`, with the 16-bit and float images said as what they became."""
    held = _held(origins)
    became = [_target(depth, options.channels) for depth in DEPTHS if depth in depths]
    changed = "converted to" if set(origins) - set(became) else "kept as"
    mean, std = _listed(options.mean), _listed(options.std)
    return (
        f"images ({held}) {changed} {' and '.join(became) or '?'}, {describe_fit(options)}, "
        f"normalised as {_formula(depths, mean, std)}; one sample is {shape}"
    )


def describe_tensors(origins: Counter[str], shape: str) -> str:
    return f"tensor files ({_held(origins)}) as float32; one sample is {shape}"


def _held(origins: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in origins.most_common())


def _target(depth: str, channels: int) -> str:
    """The mode name a depth's images become: L, RGB, RGBA; I;16 or F for one channel."""
    mode = MODES[channels]
    if depth == "8-bit":
        return mode
    if channels == 1:
        return "I;16" if depth == "16-bit" else "F"
    return f"{depth} {mode}"


def _formula(depths: set[str], mean: str, std: str) -> str:
    ranges = [(depth, RANGES[depth]) for depth in RANGES if depth in depths]
    floats = "float values taken as they are (not scaled)" if "float" in depths else ""
    if len(ranges) == 1 and not floats:
        return f"(x / {ranges[0][1]} - {mean}) / {std}"
    if not ranges:
        return f"(x - {mean}) / {std}, {floats}"
    scaled = ", ".join(f"{value} for {depth}" for depth, value in ranges)
    return f"(x / range - {mean}) / {std}, range {scaled}" + (f"; {floats}" if floats else "")


def _listed(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values) if len(values) > 1 else f"{values[0]:g}"
