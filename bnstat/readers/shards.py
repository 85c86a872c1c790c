"""Sharded checkpoints: an index (`*.index.json`) and the shard files it names, as one.

Model hubs split a big model into shards beside an index whose `weight_map` maps every
tensor name to its shard: `model.safetensors.index.json` names safetensors shards,
`pytorch_model.bin.index.json` torch zip archives (`.bin`). The index's name says nothing
reliable, so each shard is opened by the reader its content calls for, and the shards'
tensors are merged into one state dict: a layer whose tensors are spread over several
shards is read whole. What the shards' pickles refused is the checkpoint's to report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from bnstat.errors import CheckpointError
from bnstat.location import Location, open_bytes
from bnstat.readers.base import CheckpointFormat, RawCheckpoint, parse_json, printable
from bnstat.tensor_ref import TensorRef

MAX_INDEX_BYTES = 64 * 2**20

OpenShard = Callable[[Location], RawCheckpoint]


def shard_names(path: Location) -> list[str]:
    """The shard file names a shard index maps tensors to, one per tensor."""
    file = open_bytes(path)
    try:
        if file.size > MAX_INDEX_BYTES:
            raise CheckpointError("shard index is larger than 64 MB")
        index = parse_json(file.pread(0, file.size), "shard index")
    finally:
        file.close()
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError("shard index has no valid weight_map")
    return list(weight_map.values())


def read_sharded(path: Location, open_shard: OpenShard) -> RawCheckpoint:
    """Read a shard index and every shard it names (each opened with `open_shard`) as one
    flat mapping of tensors, in the format of its shards."""
    shards = sorted(set(shard_names(path)))
    checkpoint = RawCheckpoint(path, CheckpointFormat.SAFETENSORS, {})
    try:
        for position, shard in enumerate(shards):
            raw = _open(path.parent, shard, open_shard)
            checkpoint.closers += raw.closers
            raw.closers = []
            if position == 0:
                checkpoint.format = raw.format
            checkpoint.root.update(_tensors(raw, shard))
            checkpoint.refused_globals += raw.refused_globals
    except BaseException:
        checkpoint.close()
        raise
    checkpoint.refused_globals = tuple(dict.fromkeys(checkpoint.refused_globals))
    return checkpoint


def _open(folder: Location, shard: str, open_shard: OpenShard) -> RawCheckpoint:
    if Path(shard).name != shard or shard in ("", ".", ".."):
        raise CheckpointError(
            f"shard index names {printable(repr(shard))}, which is not a file beside it"
        )
    try:
        return open_shard(folder / shard)
    except OSError as err:
        raise CheckpointError(f"shard {printable(shard)}: {err.strerror or err}") from err
    except CheckpointError as err:
        raise type(err)(f"shard {printable(shard)}: {err}") from err


def _tensors(raw: RawCheckpoint, shard: str) -> dict[str, TensorRef]:
    """The shard's tensors: a shard is a flat state dict."""
    if not isinstance(raw.root, Mapping):
        raise CheckpointError(f"shard {printable(shard)} does not hold a flat state dict")
    return {k: v for k, v in raw.root.items() if isinstance(k, str) and isinstance(v, TensorRef)}
