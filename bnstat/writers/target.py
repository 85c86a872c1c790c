"""Where a recalibrated checkpoint may go, and what is written there.

The output keeps the input's format, or, for torch files and state dicts, takes the
other family when its extension asks for it (`.safetensors` against `.pt`, `.pth`, ...).
An extension that names a format bnstat cannot write from this input (`.onnx` from a
state dict, `.txt`) is refused rather than given a file of another format. The input is
never overwritten without `--in-place`. All of it, the folder's writability included, is
checked before the first pass: a job must not compute for an hour to fail at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnstat.atomic import check_writable
from bnstat.errors import UsageError
from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.tensor_ref import TensorRef

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
WRITABLE = {  # per input format: the output extensions besides the input's own
    CheckpointFormat.TORCH_ZIP: (*TORCH_SUFFIXES, ".safetensors"),
    CheckpointFormat.TORCH_LEGACY: (*TORCH_SUFFIXES, ".safetensors"),
    CheckpointFormat.SAFETENSORS: (*TORCH_SUFFIXES, ".safetensors"),
    CheckpointFormat.TORCHSCRIPT: (*TORCH_SUFFIXES, ".safetensors"),
    CheckpointFormat.PT2: (".pt2", ".safetensors"),
    CheckpointFormat.ONNX: (".onnx",),
}


@dataclass(frozen=True)
class Patch:
    """New values for one stored tensor (shape as stored)."""

    key: str
    tensor: TensorRef
    values: np.ndarray


def output_is_safetensors(output: Path, raw: RawCheckpoint) -> bool:
    """The output's format family: from its extension, else the input's."""
    suffix = output.suffix.lower()
    if suffix == ".safetensors":
        return True
    if suffix in TORCH_SUFFIXES:
        return False
    return raw.format is CheckpointFormat.SAFETENSORS


def check_target(raw: RawCheckpoint, output: Path, in_place: bool) -> None:
    """Refuse to overwrite the input unless told to, and refuse impossible targets."""
    same = output.exists() and os.path.samefile(output, raw.local_path)
    if same and not in_place:
        raise UsageError(
            f"--output {output} is the input checkpoint: pass --in-place to overwrite it"
        )
    if in_place and not same:
        raise UsageError(
            "--in-place writes back to the input: leave --output out or give the input's path"
        )
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: folder {output.parent} does not exist")
    check_writable(output.parent)
    suffix = output.suffix.lower()
    possible = WRITABLE[raw.format]
    if suffix != raw.path.suffix.lower() and suffix not in possible:
        raise UsageError(
            f"--output {output}: from a {raw.format.value} checkpoint bnstat writes "
            f"{', '.join(possible)} (or the input's own extension), not "
            f"{suffix or 'a file without one'}"
        )
