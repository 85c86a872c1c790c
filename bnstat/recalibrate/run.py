"""`recalibrate()`: checkpoint + data in, recalibrated checkpoint and a report out.

The library entry point behind `bnstat recalibrate`: open the checkpoint, build the model,
load the calibration data, estimate the statistics, write them back atomically (only
the first process of a distributed run writes) and summarise what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from bnstat.errors import UsageError
from bnstat.readers import CheckpointFormat, open_checkpoint
from bnstat.recalibrate import distributed
from bnstat.recalibrate.data import CalibrationData, DataOptions
from bnstat.recalibrate.estimator import Estimate, Method, estimate, model_batchnorms
from bnstat.recalibrate.exported import is_exported, static_batch
from bnstat.recalibrate.model_source import LoadedModel, ModelSpec, input_channels, load_model
from bnstat.recalibrate.runner import Progress
from bnstat.recalibrate.summary import RecalibrationReport, summarize
from bnstat.recalibrate.writer import Patch, check_target, write_checkpoint


@dataclass(frozen=True)
class Request:
    checkpoint: Path
    data: Path
    output: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    data_options: DataOptions = field(default_factory=DataOptions)
    channels: int | None = None  # None: as many as the model's first convolution takes
    method: Method = Method.EXACT
    passes: int = 1
    verify: bool = True
    device: str = "auto"
    input_key: str | None = None
    in_place: bool = False


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def _patches(loaded: LoadedModel, result: Estimate) -> list[Patch]:
    """New running_mean, running_var and num_batches_tracked for every measured layer."""
    patches = []
    for layer in result.layers:
        values = {
            "running_mean": layer.after.mean.numpy(),
            "running_var": layer.after.var.numpy(),
            "num_batches_tracked": np.array(float(result.batches)),
        }
        for leaf, new in values.items():
            key = f"{layer.name}.{leaf}" if layer.name else leaf
            tensor = loaded.state.tensors.get(key)
            if tensor is not None:
                patches.append(Patch(key, tensor, new))
    return patches


def recalibrate(request: Request, progress: Progress | None = None) -> RecalibrationReport:
    """Recalibrate `request.checkpoint` on `request.data` and write `request.output`."""
    start = time.perf_counter()
    with distributed.world() as (rank, world_size), open_checkpoint(request.checkpoint) as raw:
        if raw.format is CheckpointFormat.ONNX:  # no torch module: onnxruntime runs it
            from bnstat.recalibrate.onnx_recalibrate import recalibrate_onnx

            return recalibrate_onnx(request, raw, progress, rank, world_size)
        device = resolve_device(request.device)
        check_target(raw, request.output, request.in_place)
        loaded = load_model(raw, request.model, device)
        channels = request.channels or input_channels(loaded.module) or 3
        batch_size = static_batch(loaded.module) if is_exported(loaded.module) else None  # type: ignore[arg-type]
        options = replace(
            request.data_options,
            channels=channels,
            batch_size=batch_size or request.data_options.batch_size,
        )
        data = CalibrationData(request.data, options, rank, world_size)
        result = estimate(
            loaded.module, data, request.method, request.passes, request.verify, device,
            request.input_key, progress,
        )  # fmt: skip
        writes = distributed.is_writer()
        if writes:
            patches = _patches(loaded, result)
            write_checkpoint(raw, loaded.state, patches, request.output, request.in_place)
    eps = {name: float(module.eps) for name, module in model_batchnorms(loaded.module).items()}
    return summarize(
        result, data, eps, checkpoint=str(request.checkpoint),
        output=str(request.output) if writes else None, source=loaded.state.name,
        model=loaded.origin, device=str(device), seconds=time.perf_counter() - start,
    )  # fmt: skip
