"""`recalibrate_onnx()`: an ONNX model's BatchNorm statistics re-estimated without its source.

The target is the one `estimator` states: for every BatchNormalization node, the mean and
unbiased variance of its input over the calibration set when the model runs in inference
mode with the new statistics, accumulated in float64 (`ChannelMoments`). The model runs
in onnxruntime (`onnx_session`), which cannot stop a forward pass half way, so the
sweep is scheduled by depth instead of one pass per layer: a layer's depth is one more
than the deepest BatchNorm upstream of it, and pass d measures every layer of depth d
with the statistics of the shallower layers already final. Each pass therefore settles a
whole depth exactly, the sweep takes as many passes as the longest chain of BatchNorm
layers, and a last pass measures every layer to report how consistent the result is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from bnstat.dtypes import DTYPES, encode
from bnstat.errors import ModelError, UsageError
from bnstat.readers import RawCheckpoint
from bnstat.readers.onnx_graph import BatchNormNode, batchnorm_nodes
from bnstat.readers.onnx_model import StoredTensors, load_model
from bnstat.recalibrate import distributed
from bnstat.recalibrate.accumulator import Moments
from bnstat.recalibrate.data import CalibrationData
from bnstat.recalibrate.data.options import MODES
from bnstat.recalibrate.estimator import Estimate, LayerEstimate, Method, mismatch
from bnstat.recalibrate.onnx_session import MeasuringSession, Stats
from bnstat.recalibrate.onnx_writer import write_onnx
from bnstat.recalibrate.runner import PassRecord, Progress, Silent
from bnstat.recalibrate.summary import RecalibrationReport, summarize
from bnstat.recalibrate.writer import TORCH_SUFFIXES, check_target

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto

    from bnstat.recalibrate.run import Request

GRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH, GRAPHS: subgraphs read outer values


def recalibrate_onnx(
    request: Request, raw: RawCheckpoint, progress: Progress | None = None,
    rank: int = 0, world_size: int = 1,
) -> RecalibrationReport:  # fmt: skip
    """Recalibrate the ONNX model `raw` on `request.data` and write `request.output`."""
    start = time.perf_counter()
    _check_request(request)
    check_target(raw, request.output, request.in_place)
    model = load_model(raw.path, external_data=True)
    layers = batchnorm_nodes(model.graph)
    if not layers:
        raise ModelError("the model has no BatchNormalization nodes (folded away?): nothing to do")
    tensors = StoredTensors(raw.path.parent)  # the data is loaded: it opens no file
    before = {layer.name: _stored_stats(layer, tensors) for layer in layers}
    depths = batchnorm_depths(model.graph, layers)
    input_name, channels = _model_input(model, request.input_key)
    session = MeasuringSession(model, layers, before, input_name, request.device)
    options = replace(
        request.data_options,
        channels=request.channels or channels or 3,
        batch_size=session.exact_batch or request.data_options.batch_size,
    )
    data = CalibrationData(request.data, options, rank, world_size)
    eps = {layer.name: layer.eps for layer in layers}
    result, after = _estimate(session, depths, before, eps, data, request, progress or Silent())
    writes = distributed.is_writer()
    if writes:
        write_onnx(raw.path, {name: (s.mean, s.var) for name, s in after.items()}, request.output)
    return summarize(
        result, data, eps, checkpoint=str(request.checkpoint),
        output=str(request.output) if writes else None, source=None,
        model="onnx (onnxruntime)", device=session.device, seconds=time.perf_counter() - start,
    )  # fmt: skip


def _check_request(request: Request) -> None:
    if request.method is not Method.EXACT:
        raise UsageError(
            f"--method {request.method.value} trains a torch model; an ONNX model is "
            "recalibrated with --method exact"
        )
    if request.model.arch is not None or request.model.source is not None:
        raise UsageError("--arch and --source are for state dicts: an ONNX model runs as it is")
    if request.output.suffix.lower() in {*TORCH_SUFFIXES, ".safetensors", ".pt2"}:
        raise UsageError(f"--output {request.output}: an ONNX model is written as ONNX (.onnx)")


def _stored_stats(layer: BatchNormNode, tensors: StoredTensors) -> Stats:
    refs = [
        tensors.ref(layer.inputs[leaf], f"{layer.name}: {leaf}")
        for leaf in ("running_mean", "running_var")
    ]
    if any(ref.dtype.name == "bfloat16" for ref in refs):  # numpy and onnxruntime lack it
        raise ModelError(f"{layer.name}: statistics stored as bfloat16 cannot be recalibrated")
    return Stats(*(ref.read() for ref in refs))


def _model_input(model: ModelProto, key: str | None) -> tuple[str, int | None]:
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


def batchnorm_depths(graph: GraphProto, layers: Sequence[BatchNormNode]) -> dict[str, int]:
    """Per layer: 1 + the depth of the deepest BatchNorm layer its input depends on."""
    by_output = {layer.node.output[0]: layer.name for layer in layers}
    depth: dict[str, int] = {}
    found: dict[str, int] = {}
    deepest = 0
    for node in graph.node:  # topologically sorted, as ONNX requires
        level = max((depth.get(name, 0) for name in node.input), default=0)
        if any(attribute.type in GRAPH_ATTRIBUTES for attribute in node.attribute):
            level = deepest  # a subgraph may read any value computed so far
        if node.output and node.output[0] in by_output:
            level += 1
            found[by_output[node.output[0]]] = level
        deepest = max(deepest, level)
        depth.update((name, level) for name in node.output)
    return found


def _estimate(
    session: MeasuringSession,
    depths: dict[str, int],
    before: dict[str, Stats],
    eps: dict[str, float],
    data: CalibrationData,
    request: Request,
    progress: Progress,
) -> tuple[Estimate, dict[str, Stats]]:
    if request.passes < 1:
        raise ModelError("--passes must be at least 1")
    stats, records, changes = dict(before), [], []
    for sweep in range(1, request.passes + 1):
        previous = dict(stats)
        records += _sweep(session, depths, stats, data, sweep, progress)
        if sweep > 1:
            changes.append(max(_change(previous[n], stats[n]) for n in stats))
    consistency = None
    if request.verify:
        measured, record = session.measure("verify", data, list(stats), stats, progress)
        consistency = {n: mismatch(measured[n], stats[n].moments(), eps[n]) for n in measured}
        records.append(record)
    estimate = Estimate(
        method=Method.EXACT,
        layers=tuple(
            LayerEstimate(name, before[name].moments(), stats[name].moments()) for name in stats
        ),
        unreached=(),
        batches=distributed.total(records[0].batches),
        samples=distributed.total(records[0].samples),
        passes=tuple(records),
        sweep_changes=tuple(changes),
        consistency=consistency,
    )
    return estimate, stats


def _sweep(
    session: MeasuringSession,
    depths: dict[str, int],
    stats: dict[str, Stats],
    data: CalibrationData,
    sweep: int,
    progress: Progress,
) -> list[PassRecord]:
    """One sweep by depth; `stats` end up holding every layer's new statistics."""
    records = []
    deepest = max(depths.values())
    for depth in range(1, deepest + 1):
        wanted = [name for name, d in depths.items() if d == depth]
        label = f"sweep {sweep} · depth {depth}/{deepest} ({len(wanted)} layers)"
        measured, record = session.measure(label, data, wanted, stats, progress)
        for name in wanted:
            stats[name] = _as_stored(name, measured[name], stats[name])
        records.append(record)
    return records


def _as_stored(name: str, moments: Moments, old: Stats) -> Stats:
    """New statistics rounded to the stored dtype, as the written model will hold them."""
    moments.require_finite(name)
    mean, var = moments.mean.numpy(), moments.var.numpy()
    try:
        return Stats(*(_encoded(new, like) for new, like in ((mean, old.mean), (var, old.var))))
    except ValueError as err:
        raise ModelError(f"{name}: the new statistics do not fit the model's dtype: {err}") from err


def _encoded(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    stored = encode(values.reshape(like.shape), DTYPES[like.dtype.name])
    return np.frombuffer(stored, dtype=like.dtype).reshape(like.shape)


def _change(old: Stats, new: Stats) -> float:
    return mismatch(new.moments(), old.moments(), 0.0)
