"""Decoding one file into samples, in DataLoader workers, with failures sent back as data.

A worker must not raise for a corrupt file (the whole loader would stop): it returns the
reason instead, and the main process records it. Images go through Pillow: mode
conversion, resize/crop, scaling to 0..1 and normalisation; tensor files hold samples
along their first dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import Dataset

from bnstat.errors import DataError
from bnstat.execution.data.options import MODES, DataOptions

Decoded = tuple[torch.Tensor, str]  # samples, and what the file held (image mode, dtype)


@dataclass(frozen=True)
class Item:
    """One file as decoded by a worker: its samples, or why there are none."""

    index: int
    samples: torch.Tensor | None
    reason: str = ""
    fatal: bool = False
    origin: str = ""  # what the file held: an image mode ("RGB"), a tensor dtype


@dataclass(frozen=True)
class Chunk:
    """What a worker sends back for a run of files: samples by first file index, failures."""

    pieces: tuple[tuple[int, torch.Tensor], ...]
    failed: tuple[Item, ...]
    origins: tuple[str, ...] = ()  # of the files decoded


class Files(Dataset[Item]):
    """Decodes one file per item in whichever process the DataLoader runs it."""

    def __init__(self, files: Sequence[Path], decode: Callable[[Path], Decoded]) -> None:
        self.files = files
        self.decode = decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        try:
            samples, origin = self.decode(self.files[index])
            return Item(index, samples, origin=origin)
        except DataError as err:
            return Item(index, None, str(err), fatal=True)
        except Exception as err:  # whatever a decoder raises, the file is unreadable
            reason = (str(err).splitlines() or [""])[0][:200]
            return Item(index, None, f"{type(err).__name__}: {reason}".rstrip(": "))


def collate(items: list[Item]) -> Chunk:
    """Drop failures and join the samples into one tensor when their shapes agree."""
    good = [(item.index, item.samples) for item in items if item.samples is not None]
    failed = tuple(item for item in items if item.samples is None)
    origins = tuple(item.origin for item in items if item.samples is not None)
    if len(good) > 1 and len({samples.shape for _, samples in good}) == 1:
        joined = ((good[0][0], torch.cat([samples for _, samples in good])),)
        return Chunk(joined, failed, origins)
    return Chunk(tuple(good), failed, origins)


@dataclass(frozen=True)
class ImageDecoder:
    """Pillow decode, mode conversion, resize/crop and normalisation to a (1, C, H, W) tensor."""

    options: DataOptions

    def __call__(self, path: Path) -> Decoded:
        with Image.open(path) as image:
            mode = image.mode
            converted = image.convert(MODES[self.options.channels])
        pixels = np.asarray(_fit(converted, self.options), dtype=np.float32) / 255
        pixels = pixels.reshape(*pixels.shape[:2], self.options.channels)
        mean = np.asarray(self.options.mean, dtype=np.float32)
        std = np.asarray(self.options.std, dtype=np.float32)
        return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())[None], mode


def _fit(image: Image.Image, options: DataOptions) -> Image.Image:
    """Resize the shorter side then center-crop, or resize straight to `image_size`."""
    bilinear = Image.Resampling.BILINEAR
    if options.resize is None:
        if options.image_size is None:
            return image
        height, width = options.image_size
        return image.resize((width, height), bilinear)
    width, height = image.size
    short = options.resize
    size = (
        (short, int(short * height / width))
        if width <= height
        else (int(short * width / height), short)
    )
    resized = image.resize(size, bilinear)
    if options.image_size is None:
        return resized
    crop_height, crop_width = options.image_size
    left = round((size[0] - crop_width) / 2)
    top = round((size[1] - crop_height) / 2)
    return resized.crop((left, top, left + crop_width, top + crop_height))


def load_tensor_file(path: Path) -> Decoded:
    """The one tensor in a .npy, .pt/.pth or .safetensors file, as float32 samples, and
    the dtype it was stored in."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        tensor, stored = torch.from_numpy(np.asarray(array, np.float32)), str(array.dtype)
    else:
        if suffix == ".safetensors":
            tensor = _only_tensor(list(load_file(path).values()))
        else:
            tensor = _only_tensor(torch.load(path, map_location="cpu", weights_only=True))
        stored = str(tensor.dtype).removeprefix("torch.")
    if tensor.dim() == 0:
        raise DataError("holds a scalar; samples go along the first dimension (one is [1, ...])")
    return tensor.to(torch.float32), stored


def _only_tensor(content: Any) -> torch.Tensor:
    if isinstance(content, torch.Tensor):
        return content
    values = content.values() if isinstance(content, dict) else content
    tensors = (
        [v for v in values if isinstance(v, torch.Tensor)] if isinstance(values, Iterable) else []
    )
    if len(tensors) != 1:
        raise DataError(f"holds {len(tensors)} tensors; a calibration file must hold exactly one")
    return tensors[0]
