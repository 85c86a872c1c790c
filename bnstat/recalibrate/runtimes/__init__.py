"""The runtimes that recalibration drives, one adapter each, chosen by checkpoint format.

Like the readers, the choice is a table: state dicts (torch files, safetensors) become
eager modules through `--arch` or `--unsafe-load`, TorchScript and torch.export archives
and ONNX models run as they are. Every adapter implements `runtime.Runtime`.
"""

from __future__ import annotations

from collections.abc import Callable

from bnstat.readers.base import CheckpointFormat, RawCheckpoint
from bnstat.recalibrate.model_source import ModelRequest
from bnstat.recalibrate.runtime import Runtime
from bnstat.recalibrate.runtimes.eager.load import open_state_dict
from bnstat.recalibrate.runtimes.exported.runtime import open_program
from bnstat.recalibrate.runtimes.onnx.runtime import open_onnx
from bnstat.recalibrate.runtimes.torchscript.runtime import open_torchscript

OPENERS: dict[CheckpointFormat, Callable[[RawCheckpoint, ModelRequest], Runtime]] = {
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


def open_runtime(raw: RawCheckpoint, request: ModelRequest) -> Runtime:
    """The runtime that runs the model in `raw`, as `request` asks."""
    return OPENERS[raw.format](raw, request)
