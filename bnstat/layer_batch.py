"""The rules' input: every normalization layer of one state dict as flat float64 arrays.

Rules and summaries work on a `LayerBatch`: one array per quantity holding every layer's
channels back to back, with `offsets` marking the layers (`bnstat.layer_arrays`), so that
a rule over ten thousand layers costs a few numpy calls. `stages.read_layers` fills it
from a checkpoint's lazy tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bnstat.layer_arrays import layer_ids, runs_by_layer
from bnstat.readers.followers import Follower


@dataclass(frozen=True, eq=False)
class LayerBatch:
    """Every layer's channels back to back, per quantity, plus per-layer facts.

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
        return layer_ids(self.offsets)

    def of_layer(self, values: np.ndarray, layer: int) -> np.ndarray:
        """The slice of a channel array that belongs to one layer."""
        return values[self.offsets[layer] : self.offsets[layer + 1]]

    def flagged(self, mask: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(layer, channel indices within it) for every layer where `mask` is set."""
        return runs_by_layer(mask, self.offsets)
