"""All normalization layers of one state dict, read into flat float64 channel arrays.

Rules and summaries work on a `LayerBatch`: one array per quantity holding every layer's
channels back to back, with `offsets` marking the layers. Reading happens here, once,
straight from the lazy tensors, all of a quantity's tensors together (`bulk_read`), and
widens every dtype to float64 so that no statistic is computed in float16 or bfloat16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnstat.bulk_read import destinations, read_flat
from bnstat.layer_batch import LayerBatch
from bnstat.stages.find_layers import LayerRefs
from bnstat.tensor_ref import TensorRef


def _gathered(refs: Sequence[TensorRef | None], channels: np.ndarray, fill: float) -> np.ndarray:
    """Every layer's values of one quantity back to back (`fill` where a layer has none),
    read in one go (`bulk_read`)."""
    present = np.array([ref is not None for ref in refs], dtype=bool)
    values = np.full(int(channels.sum()), fill)
    if present.any():
        read = read_flat([ref for ref in refs if ref is not None])
        offsets = np.concatenate(([0], np.cumsum(channels)))
        values[destinations(offsets[:-1][present], channels[present])] = read
    return values


def read_layers(refs: Sequence[LayerRefs], default_eps: float) -> LayerBatch:
    """Read every layer's tensors; the file's own eps wins over `default_eps`."""
    channels = np.array([ref.channels for ref in refs], dtype=np.int64)
    file_eps = [ref.module.eps if ref.module else None for ref in refs]

    def gather(attr: str, fill: float) -> np.ndarray:
        return _gathered([getattr(ref, attr) for ref in refs], channels, fill)

    counts = _gathered(
        [ref.num_batches_tracked for ref in refs], np.ones(len(refs), np.int64), np.nan
    )
    return LayerBatch(
        names=tuple(ref.name for ref in refs),
        offsets=np.concatenate(([0], np.cumsum(channels))).astype(np.int64),
        mean=gather("running_mean", 0.0),
        var=gather("running_var", 1.0),
        weight=gather("weight", 1.0),
        bias=gather("bias", 0.0),
        affine=np.array([ref.weight is not None for ref in refs], dtype=bool),
        count=counts,
        eps=np.array([e if e is not None else default_eps for e in file_eps], dtype=np.float64),
        eps_from_file=np.array([e is not None for e in file_eps], dtype=bool),
        dtypes=tuple(ref.running_mean.dtype.name for ref in refs),
        kinds=tuple(ref.module.kind if ref.module else None for ref in refs),
        followers=tuple(ref.module.follower if ref.module else None for ref in refs),
    )
