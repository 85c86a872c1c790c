"""Per-channel mean and variance over a whole data set, accumulated in float64.

The estimator is the plain sample mean and the unbiased sample variance of every value a
channel sees, over all batches: the result does not depend on how the data is batched.
Every value is first shifted by a per-channel constant (the first batch's mean), so that
precision follows the spread of the values and not their size. Each batch then gives the
per-channel sum and sum of squares of its shifted values, from two plain reductions in the
input's precision (cascade summation: relative errors near 1e-7), which are queued and
added into float64 sums every `FLUSH_EVERY` batches. Plain sums over the batch and
spatial dimensions run several times faster on the CPU than a fused mean-and-variance
kernel over the same strided dimensions, and this runs on every BatchNorm input of every
batch. On the CPU the shifted values are made a few samples at a time in one reused
buffer that stays in the processor's cache: a whole shifted copy of a large activation
is a fresh allocation its size, and writing it out and reading it back costs several
times the two sums. The queue is one preallocated tensor written in place: hundreds of
small tensors kept alive between a pass's large, short-lived activations would pin the
allocator's heap (glibc cannot give back memory below a live block), and the process's
memory would grow with every batch until the next flush.

The three sums are additive, so a distributed run all-reduces them in `synchronize`, the
one place that knows about other processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bnstat.errors import DataError, ModelError
from bnstat.execution import distributed

FLUSH_EVERY = 256
CPU_CHUNK_VALUES = 1 << 21  # shifted values made at once on the CPU: 8 MB of float32


@dataclass(frozen=True)
class Moments:
    """The finished estimate for one layer: mean, unbiased variance, values per channel."""

    mean: torch.Tensor  # float64, on the CPU
    var: torch.Tensor
    count: int

    def require_variance(self, layer: str) -> None:
        """Refuse a layer measured on a single value per channel: it has no variance."""
        if self.count < 2:
            raise DataError(
                f"layer {layer} received {self.count} value per channel over the whole data, "
                "and an unbiased variance needs at least 2: use more samples (a BatchNorm1d "
                "layer receives one value per sample)"
            )

    def require_finite(self, layer: str) -> None:
        """Refuse statistics that NaN or inf activations made: they name the layer hit."""
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.var).all()):
            raise ModelError(
                f"non-finite activations reach layer {layer}: check the data and the weights "
                "before it (nothing was changed or written)"
            )


class ChannelMoments:
    """reset / update / compute over float64 shifted sums, channels along dim 1."""

    def __init__(self, channels: int, device: torch.device) -> None:
        self.channels = channels
        # float64 on the device where it exists (not on mps), else on the CPU
        self._home = torch.device("cpu") if device.type == "mps" else device
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.sum = torch.zeros(self.channels, dtype=torch.float64, device=self._home)
        self.sum_sq = torch.zeros(self.channels, dtype=torch.float64, device=self._home)
        self._queue = torch.zeros(0)  # (FLUSH_EVERY, 2, C) sums, in the input's dtype
        self._queued = self._queued_values = 0
        self._shift_like_input = torch.zeros(0)

    def update(self, values: torch.Tensor) -> None:
        """Add every value of a (N, C, ...) activation to its channel's sums."""
        if values.dim() < 2 or values.shape[1] != self.channels:
            raise ValueError(
                f"expected {self.channels} channels along dim 1, got {tuple(values.shape)}"
            )
        dims = [0, *range(2, values.dim())]
        wide = values if values.dtype in (torch.float32, torch.float64) else values.float()
        if self.shift is None:  # the first batch's mean, as the input's dtype holds it
            first = wide.detach().to(torch.float64).mean(dim=dims).to(wide.dtype)
            self.shift = first.to(self._home, torch.float64)
            self._shift_like_input = first.view([1, self.channels] + [1] * (values.dim() - 2))
        self._add_shifted_sums(wide, self._shift_like_input.to(wide.dtype), dims)
        self._queued += 1
        self._queued_values += values.numel() // self.channels
        if self._queued >= FLUSH_EVERY:
            self._flush()

    def _add_shifted_sums(self, wide: torch.Tensor, shift: torch.Tensor, dims: list[int]) -> None:
        """Write the sum and sum of squares of `wide - shift` into the next queue row."""
        row = self._queue_row(wide)
        per_sample = max(1, wide[:1].numel())
        rows = len(wide) if wide.device.type != "cpu" else max(1, CPU_CHUNK_VALUES // per_sample)
        if rows >= len(wide):  # one chunk: the shifted copy is ours to square in place
            centred = wide - shift
            torch.sum(centred, dim=dims, out=row[0])
            torch.sum(centred.mul_(centred), dim=dims, out=row[1])
            return
        starts = range(0, len(wide), rows)
        parts = wide.new_empty(len(starts), 2, self.channels)
        buffer = torch.empty_like(wide[:rows])
        for part, start in zip(parts, starts, strict=True):
            chunk = wide[start : start + rows]
            centred = buffer[: len(chunk)]
            torch.sub(chunk, shift, out=centred)
            torch.sum(centred, dim=dims, out=part[0])
            torch.sum(centred.mul_(centred), dim=dims, out=part[1])
        torch.sum(parts, dim=0, out=row)

    def _queue_row(self, like: torch.Tensor) -> torch.Tensor:
        """The next free row of the queue, which takes `like`'s dtype and device."""
        if not self._queue.numel() or (self._queue.dtype, self._queue.device) != (
            like.dtype,
            like.device,
        ):
            self._flush()
            self._queue = torch.empty(
                FLUSH_EVERY, 2, self.channels, dtype=like.dtype, device=like.device
            )
        return self._queue[self._queued]

    def _flush(self) -> None:
        if not self._queued:
            return
        sums = self._queue[: self._queued].to(self._home, torch.float64).sum(dim=0)
        self.sum += sums[0]  # of values relative to the shift
        self.sum_sq += sums[1]
        self.count += self._queued_values
        self._queued = self._queued_values = 0

    def synchronize(self) -> None:
        """Sum the accumulators of every process of a distributed run (no-op otherwise).

        Each process re-centres its sums on the first process's shift, then all sums are
        added up, so the result is what one process would have computed on all the data.
        """
        self._flush()
        if not distributed.is_active():
            return
        own = self._shift64()
        common = distributed.broadcast_from_first(own)
        delta = own - common
        n = float(self.count)
        total, total_sq = self.sum.cpu(), self.sum_sq.cpu()
        local = [
            total + n * delta,
            total_sq + 2 * delta * total + n * delta * delta,
            torch.tensor([n], dtype=torch.float64),
        ]
        total, total_sq, count = distributed.sum_across_processes(local)
        self.sum, self.sum_sq = total.to(self._home), total_sq.to(self._home)
        self.count, self.shift = int(count.item()), common.to(self._home)

    def _shift64(self) -> torch.Tensor:
        if self.shift is None:
            return torch.zeros(self.channels, dtype=torch.float64)
        return self.shift.to("cpu", torch.float64)

    def compute(self) -> Moments:
        """Mean and unbiased variance of everything seen (NaN where nothing was seen)."""
        self._flush()
        shift = self._shift64()
        total, total_sq = self.sum.cpu(), self.sum_sq.cpu()
        n = float(self.count)
        nan = torch.full_like(shift, float("nan"))
        mean = shift + total / n if n else nan
        var = (total_sq - total * total / n) / (n - 1) if n > 1 else nan
        return Moments(mean, var.clamp_min(0.0), self.count)
