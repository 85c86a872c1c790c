"""Tell a file's format from its first bytes, never from its name.

Extensions lie (`.bin`, `.ckpt`, `.pth` and `.pt` are all used for every torch format), so
the reader is chosen by magic bytes. Files bnstat cannot read get an error that says what
they appear to be, which is more use than "unsupported format".
"""

from __future__ import annotations

import enum
import stat
from pathlib import Path

from bnstat.errors import CheckpointError, UnsupportedCheckpointError
from bnstat.readers.onnx_model import looks_like_onnx
from bnstat.readers.plain_pickle import is_plain_pickle
from bnstat.readers.safetensors_file import is_shard_index, looks_like_safetensors
from bnstat.readers.torch_legacy import is_legacy_header

HEAD_BYTES = 64


class Container(enum.Enum):
    """The outer container of a file; the torch zip reader tells its kinds apart."""

    ZIP = "zip"
    SAFETENSORS = "safetensors"
    SHARD_INDEX = "shard-index"
    TORCH_LEGACY = "torch-legacy"
    ONNX = "onnx"
    PLAIN_PICKLE = "plain-pickle"


_NOT_SUPPORTED = (
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5): not a PyTorch checkpoint"),
    (b"\x93NUMPY", "a numpy .npy array, not a checkpoint"),
    (b"\x80", "a pickle of an unknown protocol: not a checkpoint"),
)


def sniff(path: Path) -> Container:
    """The container format of `path`, or a `CheckpointError` saying what the file is."""
    try:
        status = path.stat()
        size = status.st_size
        if stat.S_ISDIR(status.st_mode):
            raise CheckpointError("is a directory, not a checkpoint file")
        if not stat.S_ISREG(status.st_mode):  # a FIFO or a device: opening it can block
            raise CheckpointError("not a regular file (a pipe, socket or device)")
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
            handle.seek(257)
            tar_magic = handle.read(5)
    except FileNotFoundError:
        raise CheckpointError("no such file") from None
    except PermissionError:
        raise CheckpointError("permission denied") from None
    except OSError as err:
        raise CheckpointError(f"cannot read: {err.strerror or err}") from err
    if size == 0:
        raise CheckpointError("empty file (0 bytes)")
    return _container(head, tar_magic, size)


def _container(head: bytes, tar_magic: bytes, size: int) -> Container:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Container.ZIP
    if looks_like_safetensors(head):
        return Container.SAFETENSORS
    if is_legacy_header(head):
        return Container.TORCH_LEGACY
    if is_shard_index(head):
        return Container.SHARD_INDEX
    if looks_like_onnx(head, size):
        return Container.ONNX
    if is_plain_pickle(head):
        return Container.PLAIN_PICKLE
    if tar_magic == b"ustar":
        raise UnsupportedCheckpointError("a tar archive (torch < 0.4 format?): not supported")
    for magic, what in _NOT_SUPPORTED:
        if head.startswith(magic):
            raise UnsupportedCheckpointError(what)
    if head.startswith(b"PK"):
        raise CheckpointError("a truncated or corrupt zip archive")
    preview = head[:8].hex(" ")
    raise UnsupportedCheckpointError(
        f"not a checkpoint format bnstat reads (first bytes: {preview})"
    )
