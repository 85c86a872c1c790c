"""An ONNX graph as the scheduler sees it, and its segments as small models of their own.

Values are the graph's value names; initializers are constants (no op produces them);
a node with subgraphs (If, Loop, Scan) reads the outer values its subgraphs use. A
segment becomes a model with the segment's nodes, the initializers they read and, in
place of the statistics of its BatchNorm nodes, initializers holding the new ones: it is
built only when it is about to run, after those statistics are final. Its inputs are
the cached values (typed from the first batch it is fed), its outputs the values later
segments and the measurements need. The opsets, IR version and local functions are the
model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bnstat.execution.runtimes.onnx.session import STAT_LEAVES, Stats, new_session
from bnstat.execution.schedule import Op, SegmentSpec
from bnstat.readers.onnx_graph import SLOTS, BatchNormNode, fresh, value_names

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto

GRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH, GRAPHS


def _subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for attribute in node.attribute:
        if attribute.type in GRAPH_ATTRIBUTES:
            yield from ([attribute.g] if attribute.HasField("g") else attribute.graphs)


def outer_reads(node: NodeProto) -> list[str]:
    """Values a node's subgraphs read from the enclosing graph."""
    reads: list[str] = []
    for graph in _subgraphs(node):
        inside = {v.name for v in graph.input} | {t.name for t in graph.initializer}
        for inner in graph.node:
            reads.extend(name for name in (*inner.input, *outer_reads(inner)) if name not in inside)
            inside.update(inner.output)
        reads.extend(v.name for v in graph.output if v.name not in inside)
    return list(dict.fromkeys(reads))


class OnnxGraph:
    """The main graph of a model with its layers (see the module docstring)."""

    def __init__(self, model: ModelProto, layers: Sequence[BatchNormNode], inputs: list[str]):
        self.model, self.inputs = model, inputs
        self.nodes = list(model.graph.node)
        self.layer_of = {id(layer.node): layer for layer in layers}
        self.ids: dict[str, int] = {}

    def _id(self, name: str) -> int:
        return self.ids.setdefault(name, len(self.ids))

    def ops(self) -> tuple[Op, ...]:
        ops = [Op((), tuple(self._id(name) for name in self.inputs), is_input=True)]
        for node in self.nodes:
            layer = self.layer_of.get(id(node))
            ops.append(
                Op(
                    inputs=tuple(self._id(n) for n in (*node.input, *outer_reads(node)) if n),
                    outputs=tuple(self._id(n) for n in node.output if n),
                    layer=layer.name if layer is not None else None,
                )
            )
        return tuple(ops)

    def segment(
        self,
        spec: SegmentSpec,
        stats: dict[str, Stats],
        chosen: list[Any],
        feed: Callable[[Any], dict[str, np.ndarray]],
    ) -> OnnxSegment:
        names = {index: name for name, index in self.ids.items()}
        return OnnxSegment(self, spec, names, stats, chosen, feed)


class OnnxSegment:
    """A segment's model, built and loaded on its first batch (see the module docstring)."""

    def __init__(
        self,
        graph: OnnxGraph,
        spec: SegmentSpec,
        names: dict[int, str],
        stats: dict[str, Stats],
        chosen: list[Any],
        feed: Callable[[Any], dict[str, np.ndarray]],
    ) -> None:
        self.graph, self.spec, self.stats, self.chosen, self.feed = graph, spec, stats, chosen, feed
        self.inputs = [names[value] for value in spec.inputs]
        self.outputs = [names[value] for value in spec.outputs]
        self._session: Any = None

    def run(self, values: Sequence[Any]) -> Sequence[Any]:
        if self.spec.index == 0:
            feeds = self.feed(values[0])
        else:
            feeds = {name: _array(value) for name, value in zip(self.inputs, values, strict=True)}
        if self._session is None:
            self._session = new_session(self._model(feeds), self.chosen)
        return [torch.from_numpy(v) for v in self._session.run(self.outputs, feeds)]

    def _model(self, feeds: dict[str, np.ndarray]) -> ModelProto:
        from onnx import ModelProto, ValueInfoProto, helper, numpy_helper

        source = self.graph.model
        model = ModelProto()
        model.ir_version = source.ir_version
        model.opset_import.extend(source.opset_import)
        model.functions.extend(source.functions)
        graph = model.graph
        graph.name = f"segment_{self.spec.index}"
        taken = value_names(source.graph)
        for index in self.spec.ops:
            if index == 0:  # the op standing for the graph's inputs
                continue
            original = self.graph.nodes[index - 1]
            node = graph.node.add()
            node.CopyFrom(original)
            layer = self.graph.layer_of.get(id(original))
            if layer is not None:  # normalise with the new statistics, as initializers
                for leaf, values in zip(STAT_LEAVES, self.stats[layer.name].pair(), strict=True):
                    name = fresh(f"{layer.name}.{leaf}", taken)
                    graph.initializer.append(numpy_helper.from_array(values, name))
                    node.input[SLOTS[leaf]] = name
        read = {n for node in graph.node for n in (*node.input, *outer_reads(node))}
        graph.initializer.extend(t for t in source.graph.initializer if t.name in read)
        if self.spec.index == 0:
            graph.input.extend(v for v in source.graph.input if v.name in self.graph.inputs)
        else:
            graph.input.extend(
                helper.make_tensor_value_info(
                    name, helper.np_dtype_to_tensor_dtype(array.dtype), None
                )
                for name, array in feeds.items()
            )
        graph.output.extend(ValueInfoProto(name=name) for name in self.outputs)
        return model


def _array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
