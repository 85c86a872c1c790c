"""An ONNX model as a runtime: onnxruntime runs it, no source code needed.

The layers are the model's BatchNormalization nodes, named and read as the ONNX reader
does (`readers.onnx_graph`). Segments are small models of their own (`segments`); the
probe is the whole model with the statistics as inputs (`session`). Statistics are kept
here in the dtype the file stores them in, so that the model computes with exactly what
is written; ONNX has no training mode, so only the exact method applies, and it keeps no
batch count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnstat.dtypes import DTYPES, encode
from bnstat.errors import ModelError, UsageError
from bnstat.execution.data.options import MODES
from bnstat.execution.model import Capture, Layer, Model, Origin, Outcome, Takes, cannot_train
from bnstat.execution.model_options import ModelRequest, refuse_arch
from bnstat.execution.moments import Moments
from bnstat.execution.runtimes.onnx.segments import OnnxGraph, OnnxSegment
from bnstat.execution.runtimes.onnx.session import (
    OnnxProbe,
    ProbedModel,
    Stats,
    import_onnxruntime,
    input_type,
    providers,
)
from bnstat.execution.schedule import SegmentSpec
from bnstat.readers.base import RawCheckpoint
from bnstat.readers.onnx_graph import BatchNormNode, batchnorm_nodes
from bnstat.readers.onnx_model import StoredTensors, load_model
from bnstat.writers.onnx import write_onnx


def _model_input(model: Any, key: str | None) -> tuple[str, int | None]:
    """The one graph input the data feeds, and its channel count when the shape says it."""
    stored = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in stored]
    names = [value.name for value in inputs]
    if len(inputs) != 1 or key not in (None, names[0]):
        raise UsageError(
            f"the model takes the inputs {names}; bnstat feeds exactly one"
            + (f", and {key!r} is not it" if key is not None else "")
        )
    dims = inputs[0].type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) > 1 else None
    return names[0], channels if channels in MODES else None  # how to decode images


def _stored_stats(layer: Any, tensors: StoredTensors) -> Stats:
    refs = [
        tensors.ref(layer.inputs[leaf], f"{layer.name}: {leaf}")
        for leaf in ("running_mean", "running_var")
    ]
    if any(ref.dtype.name == "bfloat16" for ref in refs):  # numpy and onnxruntime lack it
        raise ModelError(f"{layer.name}: statistics stored as bfloat16 cannot be recalibrated")
    return Stats(*(ref.read() for ref in refs))


def _as_stored(name: str, moments: Moments, old: Stats) -> Stats:
    """New statistics rounded to the stored dtype, as the written model will hold them."""
    try:
        return Stats(
            *(
                _encoded(new.numpy(), like)
                for new, like in ((moments.mean, old.mean), (moments.var, old.var))
            )
        )
    except ValueError as err:
        raise ModelError(f"{name}: the new statistics do not fit the model's dtype: {err}") from err


def _encoded(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    stored = encode(values.reshape(like.shape), DTYPES[like.dtype.name])
    return np.frombuffer(stored, dtype=like.dtype).reshape(like.shape)


class OnnxStatistics:
    """The statistics an ONNX model computes with, in the dtype the file stores them in."""

    def __init__(self, path: Path, stats: dict[str, Stats]) -> None:
        self.path, self.stats = path, stats

    def read(self, layer: str) -> Moments:
        return self.stats[layer].moments()

    def set(self, layer: str, moments: Moments, batches: int) -> None:
        self.stats[layer] = _as_stored(layer, moments, self.stats[layer])

    @contextmanager
    def kept(self) -> Iterator[Outcome]:
        saved = dict(self.stats)
        outcome = Outcome()
        try:
            yield outcome
        finally:
            if not outcome.succeeded:
                self.stats.update(saved)

    def write(self, output: Path, in_place: bool) -> None:
        write_onnx(self.path, {name: s.pair() for name, s in self.stats.items()}, output)


class OnnxRunner:
    """onnxruntime sessions over the model, fed the statistics `store` holds now."""

    unreached: tuple[str, ...] = ()
    accumulate_on = torch.device("cpu")  # onnxruntime hands over numpy arrays

    def __init__(
        self, model: Any, nodes: list[BatchNormNode], store: OnnxStatistics, request: ModelRequest
    ) -> None:
        self.path, self.stats = store.path, store.stats
        self.layers = tuple(Layer(n.name, int(self.stats[n.name].mean.size), n.eps) for n in nodes)
        self.input_name, channels = _model_input(model, request.input_key)
        self.input_dtype, exact_batch = input_type(model, self.input_name)
        self.takes = Takes(channels, exact_batch)
        available = import_onnxruntime().get_available_providers()
        self._chosen, chosen = providers(request.device, available)
        self.origin = Origin("onnx (onnxruntime)", None, chosen)
        self.graph = OnnxGraph(model, nodes, [self.input_name])
        self._ops = self.graph.ops()
        self._probed: ProbedModel | None = None  # built on the first probe: --no-verify needs none

    def model_input(self, batch: torch.Tensor) -> np.ndarray:
        return batch.numpy().astype(self.input_dtype, copy=False)

    def _feed(self, model_input: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_name: model_input}

    def prepare(self, batch: torch.Tensor) -> None:
        """Nothing to find out by running it: its graph lists the layers and their order."""

    def capture(self) -> Capture:
        return Capture(self._ops, "ONNX")

    def segment(self, spec: SegmentSpec) -> OnnxSegment:
        return self.graph.segment(spec, self.stats, self._chosen, self._feed)

    def probe(self, layers: Sequence[str]) -> OnnxProbe:
        if self._probed is None:
            model = load_model(self.path, external_data=True)
            nodes = batchnorm_nodes(model.graph)
            self._probed = ProbedModel(model, nodes, self.stats, self._chosen)
        return self._probed.probe(layers, self._feed)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """An ONNX model has no modes: it always runs as exported."""
        yield

    def training(self) -> AbstractContextManager[bool]:
        raise cannot_train("an ONNX model has no training mode")


def open_onnx(raw: RawCheckpoint, request: ModelRequest) -> Model:
    """The model in an ONNX file; it needs no `--arch` and has a single model."""
    refuse_arch(request.spec, "an ONNX model")
    if request.spec.source is not None:
        raise UsageError("--source chooses among the models of a torch file: an ONNX model is one")
    import_onnxruntime()
    model = load_model(raw.path, external_data=True)
    nodes = batchnorm_nodes(model.graph)
    if not nodes:
        raise ModelError("the model has no BatchNormalization nodes (folded away?): nothing to do")
    tensors = StoredTensors(raw.path.parent)  # the data is loaded: it opens no file
    store = OnnxStatistics(
        raw.local_path, {node.name: _stored_stats(node, tensors) for node in nodes}
    )
    return Model(OnnxRunner(model, nodes, store, request), store)
