"""Which samples a run uses: a seeded random subset, the same way for images and tensors.

Files are put in an order drawn from the seed. An image file is one sample, so
`max_samples` takes the first files of that order; a tensor file holds many, so
`max_samples` draws that many samples, without replacement, from all the samples of
all the files: on files sorted by class, both give every class its share. A distributed
run gives every rank every `world_size`-th sample of the selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnstat.execution.data.tensor_files import Rows


def file_order(count: int, seed: int) -> list[int]:
    """The order of `count` files for this seed."""
    return [int(index) for index in np.random.default_rng(seed).permutation(count)]


def chosen_rows(
    counts: Sequence[int], limit: int | None, seed: int, rank: int = 0, world_size: int = 1
) -> list[Rows]:
    """Per file (of `counts` samples each, in order), the rows this rank reads, ascending."""
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    total = int(starts[-1])
    if limit is None or limit >= total:  # every sample: ranges, nothing materialised
        return [
            range((rank - int(start)) % world_size, count, world_size)
            for start, count in zip(starts[:-1], counts, strict=True)
        ]
    picked = np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))
    mine = picked[rank::world_size]
    bounds = np.searchsorted(mine, starts)
    return [
        mine[low:high] - start
        for low, high, start in zip(bounds[:-1], bounds[1:], starts[:-1], strict=True)
    ]
