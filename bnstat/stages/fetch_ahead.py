"""Before a remote checkpoint's layers are read, announce every byte they will need.

`read_layers` reads one quantity of every layer at a time (all running means, then all
variances, ...): on a remote file that would be five rounds of requests. Announced
here first, the spans of all of a model's BatchNorm tensors (a zip member's local header
with its bytes) are fetched in a few merged, parallel requests, and the reads that follow
are served from what was fetched. A local file needs no such notice and is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bnstat.bulk_read import prefetch
from bnstat.location import is_remote
from bnstat.readers.base import RawCheckpoint
from bnstat.stages.find_layers import LayerRefs
from bnstat.stages.find_state_dicts import StateDict
from bnstat.tensor_ref import TensorRef


def fetch_ahead(raw: RawCheckpoint, models: Iterable[tuple[StateDict, list[LayerRefs]]]) -> None:
    """Fetch the BatchNorm tensors of every model of a remote checkpoint in one go."""
    if is_remote(raw.path):
        prefetch(tensor for _, layers in models for layer in layers for tensor in _tensors(layer))


def _tensors(layer: LayerRefs) -> Iterator[TensorRef]:
    for tensor in (layer.running_mean, layer.running_var, layer.weight, layer.bias,
                   layer.num_batches_tracked):  # fmt: skip
        if tensor is not None:
            yield tensor
