"""Run an ONNX model in onnxruntime and hand over the inputs of chosen BatchNorm layers.

One session serves every pass. It runs a copy of the model in which each
BatchNormalization node reads its mean and variance from new graph inputs, so that every
pass feeds the statistics of the moment without rebuilding the session (and no graph
optimization can fold them into a convolution), and in which each node's input is also a
graph output, through an Identity node, so that a pass asks onnxruntime for just the
activations of the layers it measures. The statistics are fed in their stored dtype: the
model computes with exactly what will be written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bnstat.errors import MissingDependencyError, ModelError, UsageError
from bnstat.readers.onnx_graph import SLOTS, BatchNormNode, fresh, value_names
from bnstat.recalibrate.accumulator import ChannelMoments, Moments
from bnstat.recalibrate.runner import BatchSource, PassRecord, Progress

if TYPE_CHECKING:
    from onnx import ModelProto

# TensorProto element types bnstat feeds: float32, float16, float64
FEED_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),
    10: np.dtype("<f2"),
    11: np.dtype("<f8"),
}
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "recalibrating ONNX models") from None
    return onnxruntime


def providers(device: str, available: Sequence[str]) -> tuple[list[Any], str]:
    """onnxruntime execution providers for `--device`, and the device's name."""
    if device == "auto":
        device = "cuda" if CUDA in available else "cpu"
    if device == "cpu":
        return [CPU], "cpu"
    kind, _, index = device.partition(":")
    if kind != "cuda" or not (index.isdigit() or not index):
        raise UsageError(f"--device {device}: ONNX models run on auto, cpu, cuda or cuda:N")
    if CUDA not in available:
        raise UsageError(f"--device {device}: this onnxruntime has no CUDA execution provider")
    return [(CUDA, {"device_id": int(index or 0)}), CPU], f"cuda:{int(index or 0)}"


@dataclass(frozen=True)
class Stats:
    """The statistics one layer is run with, in the dtype the file stores them in."""

    mean: np.ndarray
    var: np.ndarray

    def moments(self) -> Moments:
        return Moments(
            torch.from_numpy(self.mean.astype(np.float64)),
            torch.from_numpy(self.var.astype(np.float64)),
            0,  # ONNX keeps no batch count
        )


@dataclass(frozen=True)
class LayerProbe:
    """The graph output carrying a layer's input and the graph inputs feeding its stats."""

    output: str
    mean: str
    var: str


class MeasuringSession:
    """The probed copy of a model in onnxruntime (see the module docstring)."""

    def __init__(
        self,
        model: ModelProto,
        layers: Sequence[BatchNormNode],
        stats: dict[str, Stats],
        input_name: str,
        device: str,
    ) -> None:
        """Turn `model` (changed in place) into the probed copy; `stats` give the types."""
        ort = import_onnxruntime()
        self.input_name = input_name
        self.input_dtype, self.exact_batch = _input_type(model, input_name)
        self.probes = _add_probes(model, layers, stats)
        chosen, self.device = providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the stored statistics it no longer reads are no news
        try:
            serialized = model.SerializeToString()
            self._session = ort.InferenceSession(serialized, options, providers=chosen)
        except Exception as err:
            raise ModelError(f"onnxruntime cannot load the model: {first_line(err)}") from err

    def measure(
        self,
        label: str,
        data: BatchSource,
        wanted: Sequence[str],
        stats: dict[str, Stats],
        progress: Progress,
    ) -> tuple[dict[str, Moments], PassRecord]:
        """Input moments of the `wanted` layers over the data, run with `stats`."""
        feeds = {}
        for name, probe in self.probes.items():
            feeds[probe.mean], feeds[probe.var] = stats[name].mean, stats[name].var
        outputs = [self.probes[name].output for name in wanted]
        cpu = torch.device("cpu")
        sums = {name: ChannelMoments(stats[name].mean.size, cpu) for name in wanted}
        start, samples, batches, skipped = time.perf_counter(), 0, 0, 0
        progress.start(label)
        try:
            for batch in data.batches():
                if self.exact_batch is not None and len(batch) != self.exact_batch:
                    skipped += len(batch)
                    continue
                feeds[self.input_name] = batch.numpy().astype(self.input_dtype, copy=False)
                for name, values in zip(wanted, self._run(outputs, feeds, batch), strict=True):
                    sums[name].update(torch.from_numpy(values))
                samples, batches = samples + len(batch), batches + 1
                progress.advance(len(batch))
        finally:
            progress.finish()
        if batches == 0:
            raise ModelError("the calibration data yielded no batches")
        for accumulator in sums.values():
            accumulator.synchronize()
        record = PassRecord(label, time.perf_counter() - start, samples, batches, skipped)
        return {name: accumulator.compute() for name, accumulator in sums.items()}, record

    def _run(self, outputs: list[str], feeds: dict[str, np.ndarray], batch: torch.Tensor) -> Any:
        try:
            return self._session.run(outputs, feeds)
        except Exception as err:  # the model rejected the batch (shape, type, ...)
            raise ModelError(
                f"the model failed on a batch of shape {tuple(batch.shape)}: {first_line(err)}"
            ) from err


def _add_probes(
    model: ModelProto, layers: Sequence[BatchNormNode], stats: dict[str, Stats]
) -> dict[str, LayerProbe]:
    from onnx import ValueInfoProto, helper

    graph = model.graph
    taken = value_names(graph)
    probes = {}
    for layer in layers:
        output, mean, var = (fresh(f"{layer.name}:{part}", taken) for part in ("x", "mean", "var"))
        graph.node.append(helper.make_node("Identity", [layer.node.input[0]], [output]))
        graph.output.append(ValueInfoProto(name=output))
        for leaf, name in (("running_mean", mean), ("running_var", var)):
            values = getattr(stats[layer.name], leaf.removeprefix("running_"))
            code = next(c for c, dtype in FEED_TYPES.items() if dtype == values.dtype)
            graph.input.append(helper.make_tensor_value_info(name, code, values.shape))
            layer.node.input[SLOTS[leaf]] = name
        probes[layer.name] = LayerProbe(output, mean, var)
    return probes


def _input_type(model: ModelProto, name: str) -> tuple[np.dtype[Any], int | None]:
    """The input's element type, and its batch size if the model was exported for one."""
    tensor_type = next(v for v in model.graph.input if v.name == name).type.tensor_type
    if tensor_type.elem_type not in FEED_TYPES:
        raise ModelError(
            f"the model's input {name} is not a float tensor (ONNX type {tensor_type.elem_type})"
        )
    batch = tensor_type.shape.dim[0].dim_value if tensor_type.shape.dim else 0
    return FEED_TYPES[tensor_type.elem_type], batch if batch > 0 else None  # -1: dynamic too


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
