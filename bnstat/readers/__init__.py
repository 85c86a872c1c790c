"""Checkpoint readers: one module per file format, chosen by sniffing the file's content.

`open_checkpoint` is the only entry point: it sniffs the file and returns a `RawCheckpoint`
whose tensors are lazy. None of the readers imports torch; the ONNX reader imports `onnx`
only when it meets an ONNX file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bnstat.readers.base import CheckpointFormat, ModuleConstants, RawCheckpoint
from bnstat.readers.onnx_model import read_onnx
from bnstat.readers.plain_pickle import read_plain_pickle
from bnstat.readers.safetensors_file import read_safetensors, read_sharded
from bnstat.readers.sniff import Container, sniff
from bnstat.readers.torch_legacy import read_torch_legacy
from bnstat.readers.torch_zip import read_torch_zip

__all__ = ["CheckpointFormat", "ModuleConstants", "RawCheckpoint", "open_checkpoint"]

_READERS: dict[Container, Callable[[Path], RawCheckpoint]] = {
    Container.ZIP: read_torch_zip,
    Container.SAFETENSORS: read_safetensors,
    Container.SHARD_INDEX: read_sharded,
    Container.TORCH_LEGACY: read_torch_legacy,
    Container.ONNX: read_onnx,
    Container.PLAIN_PICKLE: read_plain_pickle,
}


def open_checkpoint(path: Path) -> RawCheckpoint:
    """Open any supported checkpoint; use it as a context manager to release the file."""
    return _READERS[sniff(path)](path)
