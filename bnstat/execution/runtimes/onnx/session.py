"""Run an ONNX model whole in onnxruntime and hand over the inputs of chosen BatchNorm layers.

One session serves every probe. It runs a copy of the model in which each
BatchNormalization node reads its mean and variance from new graph inputs, so that every
run feeds the statistics of the moment without rebuilding the session (and no graph
optimization can fold them into a convolution), and in which each node's input is also a
graph output, through an Identity node, so that a run asks onnxruntime for just the
activations it measures (and computes only what they need). The statistics are fed in
their stored dtype: the model computes with exactly what will be written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bnstat.errors import ArgumentError, MissingDependencyError, ModelError
from bnstat.execution.moments import Moments
from bnstat.readers.onnx_graph import SLOTS, BatchNormNode, fresh, value_names

if TYPE_CHECKING:
    from onnx import ModelProto

# TensorProto element types bnstat feeds: float32, float16, float64
FEED_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),
    10: np.dtype("<f2"),
    11: np.dtype("<f8"),
}
STAT_LEAVES = ("running_mean", "running_var")
Feed = Callable[[Any], dict[str, np.ndarray]]  # a model input as onnxruntime's feeds
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "recalibrating ONNX models") from None
    return onnxruntime


def providers(device: str, available: Sequence[str]) -> tuple[list[Any], str]:
    """onnxruntime execution providers for the device asked for, and the device's name."""
    if device == "auto":
        device = "cuda" if CUDA in available else "cpu"
    if device == "cpu":
        return [CPU], "cpu"
    kind, _, index = device.partition(":")
    if kind != "cuda" or not (index.isdigit() or not index):
        raise ArgumentError("device", f"{device}: ONNX models run on auto, cpu, cuda or cuda:N")
    if CUDA not in available:
        raise ArgumentError("device", f"{device}: this onnxruntime has no CUDA execution provider")
    return [(CUDA, {"device_id": int(index or 0)}), CPU], f"cuda:{int(index or 0)}"


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def new_session(model: ModelProto, chosen: list[Any]) -> Any:
    """An inference session for `model`; a model onnxruntime refuses is a ModelError."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the stored statistics it no longer reads are no news
    # onnxruntime's threads spin for work after each run by default, taking the cores
    # from the torch reductions that measure its outputs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=chosen)
    except Exception as err:
        raise ModelError(f"onnxruntime cannot load the model: {first_line(err)}") from err


@dataclass(frozen=True)
class Stats:
    """The statistics one layer is run with, in the dtype the file stores them in."""

    mean: np.ndarray
    var: np.ndarray

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.var

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


class ProbedModel:
    """The probed copy of a model in one onnxruntime session (see the module docstring)."""

    def __init__(
        self,
        model: ModelProto,
        layers: Sequence[BatchNormNode],
        stats: dict[str, Stats],
        chosen: list[Any],
    ) -> None:
        """Turn `model` (changed in place) into the probed copy; `stats` give the types."""
        self.stats = stats  # the runtime's: read at every run
        self.probes = _add_probes(model, layers, stats)
        self._session = new_session(model, chosen)

    def run(self, wanted: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, probe in self.probes.items():
            feeds[probe.mean], feeds[probe.var] = self.stats[name].mean, self.stats[name].var
        outputs = [self.probes[name].output for name in wanted]
        return self._session.run(outputs, feeds)  # type: ignore[no-any-return]

    def probe(
        self, wanted: Sequence[str], feed: Callable[[Any], dict[str, np.ndarray]]
    ) -> OnnxProbe:
        return OnnxProbe(self, list(wanted), feed)


class OnnxProbe:
    def __init__(self, model: ProbedModel, wanted: list[str], feed: Feed) -> None:
        self._model, self._wanted, self._feed = model, wanted, feed

    def run(self, model_input: Any) -> Iterator[tuple[str, torch.Tensor]]:
        values = self._model.run(self._wanted, self._feed(model_input))
        yield from zip(self._wanted, (torch.from_numpy(v) for v in values), strict=True)

    def close(self) -> None:
        pass


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


def input_type(model: ModelProto, name: str) -> tuple[np.dtype[Any], int | None]:
    """The input's element type, and its batch size if the model was exported for one."""
    tensor_type = next(v for v in model.graph.input if v.name == name).type.tensor_type
    if tensor_type.elem_type not in FEED_TYPES:
        raise ModelError(
            f"the model's input {name} is not a float tensor (ONNX type {tensor_type.elem_type})"
        )
    batch = tensor_type.shape.dim[0].dim_value if tensor_type.shape.dim else 0
    return FEED_TYPES[tensor_type.elem_type], batch if batch > 0 else None  # -1: dynamic too
