"""Write new BatchNorm statistics into an ONNX model, changing nothing else.

The model is parsed again without its external data, each layer's mean and variance are
replaced where they are stored, and the result goes to a temporary file renamed over
the target. The graph, every other tensor (in the file or in side files, which stay as
they are), the opsets and the metadata are the input's.

Where a statistic is stored decides how it is replaced:
- read by this layer alone (an initializer or a Constant node, perhaps behind Identity
  nodes that only this layer reads): its values are replaced in place, in its own dtype
  (external ones move into the file);
- shared (torch's exporter makes layers with equal statistics read one initializer
  through Identity nodes): the nearest node that only this layer reads, an Identity or a
  ConstantOfShape, becomes a Constant node with the layer's values and the same output
  name; if not even the value the layer reads is its own, a new Constant node feeds it.
Statistics behind the longest Identity chains are placed first, so that once the other
readers have their own copies the original owner keeps its initializer.

A model with external data written to another folder gets copies of its side files, so
that the new model is complete; an existing different file of that name is not replaced.
"""

from __future__ import annotations

import filecmp
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bnstat.atomic import atomic_output, copy_into
from bnstat.errors import ModelError, UsageError
from bnstat.execution.runtimes.onnx.session import STAT_LEAVES
from bnstat.readers.onnx_graph import (
    SLOTS,
    BatchNormNode,
    GraphIndex,
    batchnorm_nodes,
    fresh,
    value_names,
)
from bnstat.readers.onnx_model import EXTERNAL, external_path, load_model

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, NodeProto, TensorProto


def write_onnx(source: Path, stats: dict[str, tuple[np.ndarray, np.ndarray]], output: Path) -> None:
    """Write `source` with each layer's (mean, var) from `stats` to `output`, atomically."""
    model = load_model(source)
    _place(model.graph, batchnorm_nodes(model.graph), stats)
    locations = {
        entry.value
        for tensor in _tensors(model.graph)
        if tensor.data_location == EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    _copy_side_files(locations, source.parent, output.parent)
    try:
        serialized = model.SerializeToString()
    except ValueError as err:  # over protobuf's 2 GB
        raise ModelError(f"the recalibrated model cannot be serialized: {err}") from err
    with atomic_output(output, like=source) as temporary:
        temporary.write_bytes(serialized)


def _place(
    graph: GraphProto, layers: list[BatchNormNode], stats: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    uses = Counter(_reads(graph))
    index = GraphIndex(graph)
    taken = value_names(graph)
    slots = [(layer, leaf) for layer in layers for leaf in STAT_LEAVES]
    slots.sort(key=lambda slot: -len(slot[0].inputs[slot[1]].chain))  # stable: graph order
    for layer, leaf in slots:
        values = stats[layer.name][STAT_LEAVES.index(leaf)]
        chain = layer.inputs[leaf].chain
        # how many values of the chain, from the layer back, nothing else reads
        private = next((i for i, name in enumerate(chain) if uses[name] != 1), len(chain))
        if private == len(chain) and not layer.inputs[leaf].is_fill:
            _overwrite(layer, leaf, values)
        elif private > 0:
            node = index.producers[chain[private - 1]]
            uses.subtract(name for name in node.input if name)
            _become_constant(node, values)
        else:
            name = fresh(f"{layer.name}.{leaf}", taken)
            _insert_constant(graph, layer.node, name, values)
            uses[layer.node.input[SLOTS[leaf]]] -= 1
            layer.node.input[SLOTS[leaf]] = name


def _overwrite(layer: BatchNormNode, leaf: str, values: np.ndarray) -> None:
    stored = layer.inputs[leaf]
    if stored.attribute is not None:
        _set_floats(stored.attribute, values)
    else:
        assert stored.tensor is not None
        _set_raw(stored.tensor, values)


def _set_floats(attribute: AttributeProto, values: np.ndarray) -> None:
    if attribute.name == "value_float":
        attribute.f = float(values.reshape(-1)[0])
    else:
        attribute.floats[:] = values.reshape(-1).tolist()


def _set_raw(tensor: TensorProto, values: np.ndarray) -> None:
    """New values as raw little-endian bytes (the stored dtype is the values' dtype)."""
    for field in ("float_data", "double_data", "int32_data", "external_data", "data_location"):
        tensor.ClearField(field)
    tensor.raw_data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()


def _constant_value(values: np.ndarray) -> AttributeProto:
    from onnx import helper, numpy_helper

    return helper.make_attribute("value", numpy_helper.from_array(values))


def _become_constant(node: NodeProto, values: np.ndarray) -> None:
    """Turn a node (Identity, ConstantOfShape) into a Constant; name and output stay."""
    node.op_type, node.domain = "Constant", ""
    del node.input[:]
    del node.attribute[:]
    node.attribute.append(_constant_value(values))


def _insert_constant(graph: GraphProto, before: NodeProto, name: str, values: np.ndarray) -> None:
    from onnx import helper

    position = next(i for i, node in enumerate(graph.node) if node.output[:1] == before.output[:1])
    constant = helper.make_node("Constant", [], [name], name=name)
    constant.attribute.append(_constant_value(values))
    graph.node.insert(position, constant)


def _subgraphs(graph: GraphProto) -> Iterator[GraphProto]:
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield attribute.g
            yield from attribute.graphs


def _reads(graph: GraphProto) -> Iterator[str]:
    """Every read of a value: node inputs and graph outputs, subgraphs included."""
    yield from (name for node in graph.node for name in node.input if name)
    yield from (value.name for value in graph.output)
    for subgraph in _subgraphs(graph):
        yield from _reads(subgraph)


def _tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Every stored tensor: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
    for subgraph in _subgraphs(graph):
        yield from _tensors(subgraph)


def _copy_side_files(locations: set[str], source: Path, target: Path) -> None:
    if source.resolve() == target.resolve():
        return
    for location in sorted(locations):
        original = external_path(source, location, "external data")
        copy = target / location
        if copy.exists():
            if filecmp.cmp(original, copy, shallow=False):
                continue
            raise UsageError(
                f"--output: {copy} exists and is not the model's external data file "
                f"{original}: refusing to replace it"
            )
        copy.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(copy, like=original) as temporary:
            copy_into(original, temporary)
