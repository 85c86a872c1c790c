"""All normalization layers of one state dict, read into flat float64 channel arrays.

Rules and summaries work on a `LayerBatch`: one array per quantity holding every layer's
channels back to back, with `offsets` marking the layers. Reading happens here, once,
straight from the lazy tensors, and widens every dtype to float64 so that no statistic
is computed in float16 or bfloat16.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bnstat.readers.followers import Follower
from bnstat.segments import runs_by_segment, segment_ids
from bnstat.stages.find_layers import LayerRefs
from bnstat.tensor_ref import TensorRef


@dataclass(frozen=True, eq=False)
class LayerBatch:
    """Segmented per-channel arrays (see `bnstat.segments`) plus per-layer facts.

    Non-affine layers have weight 1 and bias 0 in the arrays (what they compute) and
    `affine` False; `count` is `num_batches_tracked`, NaN where the file has none.
    """

    names: tuple[str, ...]
    offsets: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    affine: np.ndarray
    count: np.ndarray
    eps: np.ndarray
    eps_from_file: np.ndarray
    dtypes: tuple[str, ...]
    kinds: tuple[str | None, ...]
    followers: tuple[Follower | None, ...]  # what reads each layer's output, when known

    @property
    def size(self) -> int:
        return len(self.names)

    @cached_property
    def ids(self) -> np.ndarray:
        """Layer index of every channel."""
        return segment_ids(self.offsets)

    def of_layer(self, values: np.ndarray, layer: int) -> np.ndarray:
        """The slice of a channel array that belongs to one layer."""
        return values[self.offsets[layer] : self.offsets[layer + 1]]

    def flagged(self, mask: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(layer, channel indices within it) for every layer where `mask` is set."""
        return runs_by_segment(mask, self.offsets)


def _values(ref: TensorRef | None, channels: int, fill: float) -> np.ndarray:
    if ref is None:
        return np.full(channels, fill)
    return ref.read().astype(np.float64, copy=False).reshape(-1)


def _count(ref: TensorRef | None) -> float:
    return float(ref.read().reshape(-1)[0]) if ref is not None else np.nan


def read_layers(refs: Sequence[LayerRefs], default_eps: float) -> LayerBatch:
    """Read every layer's tensors; the file's own eps wins over `default_eps`."""
    channels = [ref.channels for ref in refs]
    file_eps = [ref.module.eps if ref.module else None for ref in refs]

    def gather(attr: str, fill: float) -> np.ndarray:
        parts = [
            _values(getattr(ref, attr), n, fill) for ref, n in zip(refs, channels, strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    return LayerBatch(
        names=tuple(ref.name for ref in refs),
        offsets=np.concatenate(([0], np.cumsum(channels, dtype=np.int64))),
        mean=gather("running_mean", 0.0),
        var=gather("running_var", 1.0),
        weight=gather("weight", 1.0),
        bias=gather("bias", 0.0),
        affine=np.array([ref.weight is not None for ref in refs], dtype=bool),
        count=np.array([_count(ref.num_batches_tracked) for ref in refs], dtype=np.float64),
        eps=np.array([e if e is not None else default_eps for e in file_eps], dtype=np.float64),
        eps_from_file=np.array([e is not None for e in file_eps], dtype=bool),
        dtypes=tuple(ref.running_mean.dtype.name for ref in refs),
        kinds=tuple(ref.module.kind if ref.module else None for ref in refs),
        followers=tuple(ref.module.follower if ref.module else None for ref in refs),
    )
