"""torch.fx graphs for recalibration: the scheduler's view, runnable segments and probes.

Both eager models (traced with `torch.fx` or captured with `torch.export`) and
torch.export programs are fx graphs. A BatchNorm call is a node that `FxGraph.layer_of`
names: a `call_module` of a BatchNorm module in a traced model, a `batch_norm` call on a
program's buffers in an exported one. Segments and probes are new `GraphModule`s over
the same root module, so they read its live parameters and buffers: statistics set
between segments take effect at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import fx, nn

from bnstat.execution.schedule import Op, SegmentSpec

LayerOf = Callable[[fx.Node], str | None]
Feed = Callable[[Any], tuple[Any, ...]]  # the model input as the graph's placeholders
IN_PLACE_OPERATORS = {
    operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    operator.iand, operator.ior, operator.ixor,
}  # fmt: skip


def _written(node: fx.Node, root: nn.Module) -> tuple[fx.Node, ...]:
    """The inputs a node changes in place (ReLU(inplace=True), `x.add_(y)`, `x[i] = y`)."""
    args = [a for a in node.args if isinstance(a, fx.Node)]
    if not args:
        return ()
    first = args[0]
    schema = getattr(node.target, "_schema", None)  # an ATen operator knows what it writes
    if schema is not None:
        return tuple(
            value
            for value, argument in zip(node.args, schema.arguments, strict=False)
            if isinstance(value, fx.Node) and argument.alias_info and argument.alias_info.is_write
        )
    if node.op == "call_module":
        inplace = getattr(root.get_submodule(str(node.target)), "inplace", False)
        return (first,) if inplace is True else ()
    if node.kwargs.get("inplace") is True or node.target in IN_PLACE_OPERATORS:
        return (first,)
    name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", "")
    return (first,) if name.endswith("_") and not name.startswith("_") else ()


class FxGraph:
    """An fx graph with its BatchNorm calls named, as scheduler ops and runnable pieces."""

    def __init__(self, root: nn.Module, graph: fx.Graph, layer_of: LayerOf, feed: Feed) -> None:
        self.root, self.layer_of, self.feed = root, layer_of, feed
        self.nodes = [node for node in graph.nodes if node.op != "output"]
        self.placeholders = [node for node in self.nodes if node.op == "placeholder"]

    def calls(self) -> list[tuple[str, fx.Node]]:
        """(layer, node) of every BatchNorm call, in graph order."""
        return [(name, node) for node in self.nodes if (name := self.layer_of(node)) is not None]

    def ops(self) -> tuple[Op, ...]:
        ids = {node: index for index, node in enumerate(self.nodes)}
        ops = []
        for node in self.nodes:
            layer = self.layer_of(node)
            inputs = list(node.all_input_nodes)
            if layer is not None:  # the data input first
                data = node.args[0]
                inputs = [data, *(n for n in inputs if n is not data)]
            ops.append(
                Op(
                    inputs=tuple(ids[n] for n in inputs),
                    outputs=(ids[node],),
                    layer=layer,
                    mutates=tuple(ids[n] for n in _written(node, self.root)),
                    is_input=node.op == "placeholder",
                )
            )
        return tuple(ops)

    def segment(self, spec: SegmentSpec, device: torch.device) -> FxSegment:
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        if spec.index == 0:  # every placeholder, so that the model input binds as it should
            for node in self.placeholders:
                env[node] = graph.node_copy(node)
        else:
            for value in spec.inputs:
                env[self.nodes[value]] = graph.placeholder(f"cached_{value}")
        for index in spec.ops:
            node = self.nodes[index]
            if node not in env:
                env[node] = graph.node_copy(node, lambda n: env[n])
        graph.output(tuple(env[self.nodes[value]] for value in spec.outputs))
        return FxSegment(fx.GraphModule(self.root, graph), spec.index == 0, self.feed, device)

    def probe(self, wanted: Sequence[str]) -> FxProbe:
        return FxProbe(self, set(wanted))


def to_device(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


class FxSegment:
    def __init__(self, module: fx.GraphModule, first: bool, feed: Feed, device: torch.device):
        self.module, self.first, self.feed, self.device = module, first, feed, device

    def run(self, values: Sequence[Any]) -> Sequence[Any]:
        if self.first:
            return self.module(*self.feed(values[0]))  # type: ignore[no-any-return]
        return self.module(*(to_device(value, self.device) for value in values))  # type: ignore[no-any-return]


class FxProbe:
    """The whole graph with the wanted calls' inputs as its outputs, dead code removed."""

    def __init__(self, source: FxGraph, wanted: set[str]) -> None:
        chosen = [(name, node) for name, node in source.calls() if name in wanted]
        self._names = [name for name, _ in chosen]
        graph = fx.Graph()  # plain inputs and outputs, not the program's pytree
        copies: dict[fx.Node, fx.Node] = {}
        graph.graph_copy(source.nodes[0].graph, copies)
        graph.output(tuple(copies[node.args[0]] for _, node in chosen))  # type: ignore[index]
        self._module = fx.GraphModule(source.root, graph)
        self._module.graph.eliminate_dead_code()
        self._module.recompile()
        self._feed = source.feed

    def run(self, model_input: Any) -> Iterator[tuple[str, torch.Tensor]]:
        yield from zip(self._names, self._module(*self._feed(model_input)), strict=True)

    def close(self) -> None:
        pass
