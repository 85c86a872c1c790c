"""Plain Python pickles (`pickle.dump`) of objects or state dicts that hold torch tensors.

Some projects ship a model as `pickle.dump(obj)` rather than `torch.save`. Such a file
has no torch header, and each tensor's storage is pickled by value: the pickle calls
`torch.storage._load_from_bytes(b)`, where `b` is a complete legacy `torch.save` stream
of that one storage. torch itself reads that stream with `torch.load(weights_only=False)`,
so `torch.load(weights_only=True)` refuses the file; the statistics are in there all the
same.

bnstat reads the whole pickle through the same safe unpickler as every other pickle, and
answers `_load_from_bytes` with its own reader of legacy streams: each nested stream's
pickles go through the allow-list too and are charged to the outer pickle's budget
(memory and opcodes), so nesting cannot multiply what a file may cost. The call is still
listed among the globals `weights_only` would refuse (BN012), and whatever a nested
stream names is reported like the outer pickle's own globals.
"""

from __future__ import annotations

from typing import Any

from bnstat.dtypes import DType
from bnstat.errors import CheckpointError
from bnstat.location import Location, Opened, open_bytes
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.readers.pickle_scan import MAX_PICKLE_OPS, scan_globals
from bnstat.readers.safe_pickle import filled, load_pickle, scan_pickle, unlisted_globals
from bnstat.readers.torch_legacy import read_legacy_stream
from bnstat.tensor_ref import ByteSource

MAX_PLAIN_PICKLE_BYTES = 128 * 2**20  # read whole, unlike torch files: the tensors are inside
LOAD_FROM_BYTES = ("torch.storage", "_load_from_bytes")
LOADER = ".".join(LOAD_FROM_BYTES)


def read_plain_pickle(path: Location) -> RawCheckpoint:
    """Read a plain pickle; its tensors are read from the nested torch streams."""
    file = open_bytes(path)
    checkpoint = RawCheckpoint(path, CheckpointFormat.PICKLE, None, closers=[file.close])
    return filled(checkpoint, lambda: _fill(checkpoint, file))


def _persistent_storage(key: str, dtype: DType, numel: int) -> ByteSource:
    raise CheckpointError("a plain pickle names a persistent storage, which only torch.save writes")


def _fill(checkpoint: RawCheckpoint, file: Opened) -> None:
    if file.size > MAX_PLAIN_PICKLE_BYTES:
        raise CheckpointError(
            f"a plain pickle of {file.size} bytes: bnstat reads plain pickles whole, up to "
            f"{MAX_PLAIN_PICKLE_BYTES // 2**20} MiB (save the model with torch.save instead)"
        )
    data = file.pread(0, file.size)
    scanner = scan_pickle(data)
    budget = scanner.budget
    budget.ops_left = MAX_PICKLE_OPS - scanner.ops
    nested: list[str] = []  # weights_only refuses the call itself, then what streams name

    def load_from_bytes(stream: Any) -> Any:
        if type(stream) is not bytes:
            raise CheckpointError(f"{LOADER} is given something that is not bytes")
        budget.charge(len(stream), LOADER)
        inner = read_legacy_stream(stream, checkpoint.path, budget)
        nested.extend((LOADER, *inner.refused_globals))
        return inner.root

    result = load_pickle(
        data, _persistent_storage, scanned=scanner, honoured={LOAD_FROM_BYTES: load_from_bytes}
    )
    checkpoint.root = result.root
    trailing = unlisted_globals(scan_globals(data[result.end :])) if result.end < len(data) else []
    checkpoint.refused_globals = tuple(dict.fromkeys([*result.refused_globals, *nested, *trailing]))
