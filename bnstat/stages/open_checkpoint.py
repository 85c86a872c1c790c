"""Open a checkpoint with the reader its content calls for (one module per format in
`bnstat.readers`).

The container was sniffed when the inputs were expanded (`expand_inputs`); a path given
without it is sniffed here. A reader is imported when its format is met, so that a
safetensors file never loads the pickle machinery, nor an ONNX model the zip reader. The
shards of a sharded checkpoint are opened the same way, each by its own content.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from bnstat.errors import CheckpointError, UnsupportedCheckpointError, unreachable
from bnstat.location import Location
from bnstat.readers.base import RawCheckpoint
from bnstat.readers.sniff import Container, sniff


def open_checkpoint(
    path: Location, sniffed: Container | CheckpointError | None = None
) -> RawCheckpoint:
    """Open any supported checkpoint; use it as a context manager to release the file.

    `sniffed` is what `sniff(path)` gave, when it was already asked."""
    found = sniff(path) if sniffed is None else sniffed
    if isinstance(found, CheckpointError):
        raise found
    return reader(found)(path)


def reader(container: Container) -> Callable[[Location], RawCheckpoint]:
    """The reader of a container."""
    match container:
        case Container.ZIP:
            from bnstat.readers.torch_zip import read_torch_zip

            return read_torch_zip
        case Container.SAFETENSORS:
            from bnstat.readers.safetensors_file import read_safetensors

            return read_safetensors
        case Container.SHARD_INDEX:
            from bnstat.readers.shards import read_sharded

            return partial(read_sharded, open_shard=_open_shard)
        case Container.TORCH_LEGACY:
            from bnstat.readers.torch_legacy import read_torch_legacy

            return read_torch_legacy
        case Container.ONNX:
            from bnstat.readers.onnx_model import read_onnx

            return read_onnx
        case Container.PLAIN_PICKLE:
            from bnstat.readers.plain_pickle import read_plain_pickle

            return read_plain_pickle
    unreachable(container)


def _open_shard(path: Location) -> RawCheckpoint:
    """A shard named by an index, opened by its content; never another index."""
    found = sniff(path)
    if found is Container.SHARD_INDEX:
        raise UnsupportedCheckpointError("a shard index that names another index")
    return reader(found)(path)
