"""Probes: run the model on a batch and hand over the inputs of chosen BatchNorm layers.

An eager model is probed with forward hooks (which see each call's input); once the last
wanted call has run, a hook ends the forward pass (nothing after it is computed). A
TorchScript model accepts no hooks, so its inlined forward graph is copied with the
wanted `batch_norm` inputs as extra outputs, and dead-code elimination drops whatever
they do not need: the same early stop, no source code needed. A torch.export program is
probed the same way through a copy of its FX graph. Either way the probe reads the live
module, so buffers changed between batches take effect at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

import torch
from torch import fx, nn

from bnstat.errors import ModelError
from bnstat.recalibrate.exported import batchnorm_calls, call_name, is_exported
from bnstat.recalibrate.layers import BatchNormLayer, is_scripted

Consume = Callable[[str, torch.Tensor], None]


class Probe(Protocol):
    def run(self, batch: Any, consume: Consume) -> None:
        """Run one batch; call `consume(layer_name, input)` for every wanted call."""

    def close(self) -> None: ...


class _StopForward(Exception):
    """Raised inside the model once every wanted BatchNorm call has been seen."""


class EagerProbe:
    def __init__(self, model: nn.Module, layers: Collection[BatchNormLayer]) -> None:
        self._model = model
        self._calls = sum(layer.calls for layer in layers)
        self._remaining = 0
        self._consume: Consume | None = None
        self._handles = [
            layer.module.register_forward_hook(self._hook(layer.name)) for layer in layers
        ]

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
            assert self._consume is not None
            self._consume(name, inputs[0])
            self._remaining -= 1
            if self._remaining == 0:
                raise _StopForward

        return hook

    def run(self, batch: Any, consume: Consume) -> None:
        self._consume, self._remaining = consume, self._calls
        try:
            self._model(batch)
        except _StopForward:
            pass
        finally:
            self._consume = None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class ScriptProbe:
    def __init__(self, model: torch.jit.ScriptModule, wanted: Collection[str]) -> None:
        self._module = model._c
        try:
            self._function, self._names = _probe_function(model, set(wanted))
        except RuntimeError as err:
            raise ModelError(f"cannot instrument this TorchScript module: {err}") from err

    def run(self, batch: Any, consume: Consume) -> None:
        outputs = self._function(self._module, batch)
        for name, value in zip(self._names, outputs, strict=True):
            consume(name, value)

    def close(self) -> None:
        pass


def batchnorm_nodes(graph: torch._C.Graph) -> list[tuple[str, torch._C.Node]]:
    """(module name, node) of every batch_norm call in a graph, in execution order."""
    found: list[tuple[str, torch._C.Node]] = []

    def walk(block: Any) -> None:  # the graph itself, or a nested block of it
        for node in block.nodes():
            if node.kind() == "aten::batch_norm":
                found.append((_attribute_path(list(node.inputs())[3]), node))
            for inner in node.blocks():
                walk(inner)

    walk(graph)
    return found


def _attribute_path(value: torch._C.Value) -> str:
    """`block.bn1` for the value `self.block.bn1.running_mean`."""
    parts = []
    while value.node().kind() == "prim::GetAttr":
        parts.append(value.node().s("name"))
        value = value.node().input()
    return ".".join(reversed(parts[1:]))


def _probe_function(model: torch.jit.ScriptModule, wanted: set[str]) -> tuple[Any, list[str]]:
    graph = model.inlined_graph
    chosen = [(name, node) for name, node in batchnorm_nodes(graph) if name in wanted]
    values = [node.inputsAt(0) for _, node in chosen]
    output = graph.create("prim::TupleConstruct", values, 1)
    output.output().setType(torch._C.TupleType([v.type() for v in values]))
    graph.insertNode(output)
    graph.return_node().replaceInput(0, output.output())
    torch._C._jit_pass_dce(graph)
    graph.lint()
    function = torch._C._create_function_from_graph("bnstat_probe", graph)
    return function, [name for name, _ in chosen]


class GraphProbe:
    def __init__(self, program: fx.GraphModule, wanted: Collection[str]) -> None:
        chosen = [n for n in batchnorm_calls(program.graph) if call_name(n) in set(wanted)]
        self._names = [str(call_name(node)) for node in chosen]
        graph = fx.Graph()  # plain inputs and outputs, not the program's pytree
        copies: dict[fx.Node, fx.Node] = {}
        graph.graph_copy(program.graph, copies)
        graph.output(tuple(copies[node.args[0]] for node in chosen))  # type: ignore[index]
        self._probe = fx.GraphModule(program, graph)
        self._probe.graph.eliminate_dead_code()
        self._probe.recompile()

    def run(self, batch: Any, consume: Consume) -> None:
        outputs = self._probe(batch)
        for name, value in zip(self._names, outputs, strict=True):
            consume(name, value)

    def close(self) -> None:
        pass


def make_probe(model: nn.Module, layers: Collection[BatchNormLayer]) -> Probe:
    if is_exported(model):
        return GraphProbe(model, [layer.name for layer in layers])  # type: ignore[arg-type]
    if is_scripted(model):
        return ScriptProbe(model, [layer.name for layer in layers])  # type: ignore[arg-type]
    return EagerProbe(model, layers)
