"""Samples as they are held between passes, and as the model gets them.

Decoded images stay in their own integer type (uint8, or uint16 for 16-bit images) and
tensor files in the dtype they were stored in: held data then costs a quarter of float32
for 8-bit images. Each run of samples carries the number that brings its type's fixed
range to 0..1 (255, 65535; 1 for float images and tensor files, taken as they are), and
a batch becomes float32, scaled and normalised only when it is handed to the model, on
the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

UNSCALED = 1.0


@dataclass(frozen=True)
class Samples:
    """Samples along the first dimension of `values`, in their stored dtype; dividing by
    `scale` brings them to the unit range of their type."""

    values: torch.Tensor
    scale: float = UNSCALED

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, part: slice) -> Samples:
        return Samples(self.values[part], self.scale)

    @property
    def nbytes(self) -> int:
        return self.values.element_size() * self.values.nelement()


def join(parts: Sequence[Samples]) -> Samples:
    """One run of samples; parts of different types meet as float32 in the unit range."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if all(p.values.dtype == first.values.dtype and p.scale == first.scale for p in parts):
        return Samples(torch.cat([p.values for p in parts]), first.scale)
    return Samples(torch.cat([p.values.to(torch.float32) / p.scale for p in parts]))


class Normalise:
    """Turns held samples into the model's float32 input on `device`: scaled to the unit
    range, then `(x - mean) / std` per channel when `mean` and `std` are given. The
    samples travel in their held type (a quarter of float32 for 8-bit images) and are
    converted there, in place."""

    def __init__(
        self,
        device: torch.device,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        self.device = device
        self.shift = None if mean is None else _per_channel(mean, device)
        self.spread = None if std is None else _per_channel(std, device)

    def __call__(self, samples: Samples) -> torch.Tensor:
        values = samples.values
        if values.dtype == torch.uint16 and self.device.type != "cpu":
            values = values.to(torch.int32)  # few kernels take uint16 off the CPU
        scaled = samples.scale != UNSCALED
        changed = scaled or self.shift is not None
        moved = values.to(self.device, non_blocking=True)
        batch = moved.to(torch.float32, copy=changed)  # never the held samples themselves
        if scaled:
            batch.div_(samples.scale)
        if self.shift is not None and self.spread is not None:
            batch.sub_(self.shift).div_(self.spread)
        return batch


def _per_channel(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)
