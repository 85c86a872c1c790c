"""Images to samples: every mode scaled by its type's fixed range, never clipped, or refused.

Pillow's own conversions clip: `convert("L")` turns a 16-bit image into 0 and 255 and a
float one into 0 and 1. So the type of a mode decides what happens, never the values of
one image: 8-bit modes (L, RGB, RGBA, P, 1, CMYK, ...) go through Pillow's conversion to
the channels asked for and are divided by 255; 16-bit modes (I;16 and its byte orders)
keep their 16 bits and are divided by 65535; float images (F) are taken as they are.
32-bit integer images (I) have no fixed range to scale by and are refused. One-channel
16-bit and float images are repeated into 3 channels (and an opaque alpha) when the
model takes RGB(A), as Pillow does for L.

Memory: a JPEG is decoded already reduced (`Image.draft`, by up to 8) to no less than the
size it will be resized to; a mode is converted only when it differs from the one
wanted; resizing happens in the image's own type and nothing is made float32 here. A
worker holds one decoded image (at most Pillow's decompression-bomb limit of pixels),
its conversion and its small resized copy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bnstat.errors import DataError
from bnstat.execution.data.options import MODES, DataOptions


class Skipped(Exception):
    """A file that holds no usable sample; the message says why, in bnstat's words."""


@dataclass(frozen=True)
class Depth:
    """What a family of modes becomes: its values' type and the range that maps to 0..1."""

    name: str
    dtype: type[np.generic]
    scale: float  # 1: taken as they are
    full: float  # an opaque alpha


EIGHT_BIT = Depth("8-bit", np.uint8, 255.0, 255)
SIXTEEN_BIT = Depth("16-bit", np.uint16, 65535.0, 65535)
FLOAT = Depth("float", np.float32, 1.0, 1.0)
DEPTHS = {depth.name: depth for depth in (EIGHT_BIT, SIXTEEN_BIT, FLOAT)}


def depth_of(mode: str) -> Depth:
    """The family of a Pillow mode; 32-bit integer images are refused."""
    if mode.startswith("I;16"):
        return SIXTEEN_BIT
    if mode == "F":
        return FLOAT
    if mode.startswith("I"):
        raise DataError(
            f"a 32-bit integer image (mode {mode}) has no fixed range to scale by; "
            "save it as 8-bit, 16-bit or float"
        )
    return EIGHT_BIT


Decoded = tuple[np.ndarray, str]  # (1, C, H, W) samples in the depth's type, the mode


@dataclass(frozen=True)
class ImageDecoder:
    """One image file to a (1, C, H, W) array in its depth's type (see the module doc)."""

    options: DataOptions

    def __call__(self, path: Path) -> Decoded:
        with warnings.catch_warnings():  # over Pillow's warning size, the image is reduced
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(path)
            except Image.DecompressionBombError as err:
                limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
                raise Skipped(
                    f"more pixels than the {limit} Pillow decodes (a decompression-bomb "
                    "guard): not decoded"
                ) from err
        with image:
            mode, depth = image.mode, depth_of(image.mode)
            wanted = _wanted_size(image.size, self.options)
            if image.format == "JPEG" and wanted is not None:
                image.draft(mode, wanted)
            pixels = np.asarray(fit(_in_depth(image, depth, self.options.channels), self.options))
        return _channels_first(pixels, depth, self.options.channels), mode


def _in_depth(image: Image.Image, depth: Depth, channels: int) -> Image.Image:
    """8-bit modes as the mode of `channels`; 16-bit as native I;16; float as it is."""
    target = MODES[channels] if depth is EIGHT_BIT else "I;16" if depth is SIXTEEN_BIT else "F"
    return image if image.mode == target else image.convert(target)


def _channels_first(pixels: np.ndarray, depth: Depth, channels: int) -> np.ndarray:
    """(H, W[, C]) pixels as (1, C, H, W) in the depth's type; one gray channel repeated
    into RGB, with an opaque alpha for RGBA."""
    if depth is FLOAT and not np.isfinite(pixels).all():
        raise DataError(
            "the image holds NaN or infinite values: non-finite input would poison every "
            "statistic; fix the step that wrote it"
        )
    pixels = pixels.astype(depth.dtype, copy=False)
    if pixels.ndim == 3:
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))[None]
    gray = [pixels] * min(channels, 3)
    alpha = [np.full_like(pixels, depth.full)] if channels == 4 else []
    return np.stack(gray + alpha)[None]


def _resized(width: int, height: int, short: int) -> tuple[int, int]:
    """The size with the shorter side at `short`, the aspect ratio kept."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _wanted_size(size: tuple[int, int], options: DataOptions) -> tuple[int, int] | None:
    """The (width, height) an image is resized to, before any crop (None: kept)."""
    if options.resize is not None:
        return _resized(*size, options.resize)
    if options.image_size is not None:
        return options.image_size[1], options.image_size[0]
    return None


def fit(image: Image.Image, options: DataOptions) -> Image.Image:
    """Resize the shorter side then center-crop, or resize straight to `image_size`."""
    bilinear = Image.Resampling.BILINEAR
    if options.resize is None:
        if options.image_size is None:
            return image
        height, width = options.image_size
        return image.resize((width, height), bilinear)
    size = _resized(*image.size, options.resize)
    resized = image.resize(size, bilinear)
    if options.image_size is None:
        return resized
    crop_height, crop_width = options.image_size
    left = round((size[0] - crop_width) / 2)
    top = round((size[1] - crop_height) / 2)
    return resized.crop((left, top, left + crop_width, top + crop_height))


def scaling(depths: set[str]) -> str:
    """How values of these depths were brought to 0..1, as the report's formula says it:
    `x / 255`, `x` (float taken as they are), or one term per depth."""
    terms = {"8-bit": "x / 255", "16-bit": "x / 65535", "float": "x"}
    if len(depths) == 1:
        return terms[next(iter(depths))]
    return ", ".join(f"{terms[name]} ({name})" for name in DEPTHS if name in depths)
