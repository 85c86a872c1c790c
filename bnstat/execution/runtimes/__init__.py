"""The runtimes that run a checkpoint's model, one adapter each, chosen by its format.

Like the readers, the choice is a table: state dicts (torch files, safetensors) become
eager modules through `--arch` or `--unsafe-load`, TorchScript and torch.export archives
and ONNX models run as they are. Every opener gives a `model.Model`: a runner and a
statistics store.
"""

from __future__ import annotations

from collections.abc import Callable

from bnstat.execution.model import Model
from bnstat.execution.model_options import ModelRequest
from bnstat.execution.runtimes.eager.load import open_state_dict
from bnstat.execution.runtimes.exported.runtime import open_program
from bnstat.execution.runtimes.onnx.runtime import open_onnx
from bnstat.execution.runtimes.torchscript.runtime import open_torchscript
from bnstat.readers.base import CheckpointFormat, RawCheckpoint

OPENERS: dict[CheckpointFormat, Callable[[RawCheckpoint, ModelRequest], Model]] = {
    CheckpointFormat.TORCH_ZIP: open_state_dict,
    CheckpointFormat.TORCH_LEGACY: open_state_dict,
    CheckpointFormat.SAFETENSORS: open_state_dict,
    CheckpointFormat.TORCHSCRIPT: open_torchscript,
    CheckpointFormat.PT2: open_program,
    CheckpointFormat.ONNX: open_onnx,
}


RUN_AS_THEY_ARE = frozenset(
    {CheckpointFormat.TORCHSCRIPT, CheckpointFormat.PT2, CheckpointFormat.ONNX}
)  # formats that hold the model itself: no --arch


def open_model(raw: RawCheckpoint, request: ModelRequest) -> Model:
    """The model in `raw` (its runner and its statistics), as `request` asks."""
    return OPENERS[raw.format](raw, request)
