"""A TorchScript module's inlined graph: the scheduler's view, runnable segments and probes.

Scripted and traced archives alike carry a graph in which every BatchNorm is an
`aten::batch_norm` node reading `self.<path>.running_mean` (so the layer is named by that
attribute path) with eps as a constant input. Nothing in the graph accepts hooks, so
pieces of it are run as new functions made from edited copies:

- a segment: the copy's values that earlier segments cached become new inputs, the values
  later segments need become its outputs, and every node that belongs to another
  segment is destroyed (dead-code elimination alone keeps side-effecting nodes, such as
  input checks, together with everything upstream of them);
- a probe: the whole copy with the inputs of the wanted calls as its outputs.

Both read the live module (`self` is their first argument), so statistics set between
segments take effect at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from bnstat.errors import ModelError
from bnstat.execution.schedule import Op, SegmentSpec

Value = Any  # torch._C.Value
Node = Any  # torch._C.Node
BATCH_NORM = "aten::batch_norm"


def attribute_path(value: Value) -> str:
    """`block.bn1` for the value `self.block.bn1.running_mean`."""
    parts = []
    while value.node().kind() == "prim::GetAttr":
        parts.append(value.node().s("name"))
        value = value.node().input()
    return ".".join(reversed(parts[1:]))


def batchnorm_nodes(graph: Any) -> list[tuple[str, Node]]:
    """(layer, node) of every batch_norm call, nested blocks included, in execution order."""
    found: list[tuple[str, Node]] = []

    def walk(block: Any) -> None:
        for node in block.nodes():
            if node.kind() == BATCH_NORM:
                found.append((attribute_path(node.inputsAt(3)), node))
            for inner in node.blocks():
                walk(inner)

    walk(graph)
    return found


def constant(value: Value) -> Any:
    """The value of a graph constant, or None if it is computed."""
    return value.toIValue() if value.node().kind() == "prim::Constant" else None


def _outer_reads(node: Node) -> list[Value]:
    """Values a node's blocks read from outside them (control flow reads them implicitly)."""
    inside: set[Value] = set()
    reads: list[Value] = []

    def walk(block: Any) -> None:
        inside.update(block.inputs())
        for inner in block.nodes():
            reads.extend(inner.inputs())
            for nested in inner.blocks():
                walk(nested)
            inside.update(inner.outputs())
        reads.extend(block.outputs())

    for block in node.blocks():
        walk(block)
    return [value for value in dict.fromkeys(reads) if value not in inside]


def _written(node: Node) -> list[int]:
    """Positions of the inputs a node changes in place (`Tensor(a!)` in its schema)."""
    try:
        schema = node.schema()
    except RuntimeError:
        return []
    if schema == "(no schema)" or "!" not in schema:
        return []
    arguments = schema.split("(", 1)[1].rsplit(") ->", 1)[0].split(", ")
    return [i for i, argument in enumerate(arguments) if "!)" in argument]


class ScriptGraph:
    """The inlined forward graph of a TorchScript module (see the module docstring)."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module
        self.graph = module.inlined_graph  # a fresh copy: ours to read
        self.nodes = list(self.graph.nodes())
        self.data_inputs = list(self.graph.inputs())[1:]  # the first one is `self`
        self.ids: dict[Value, int] = {}
        self.where: list[tuple[int, int]] = []  # per value id: (node index or -1, position)
        for position, value in enumerate(self.data_inputs):
            self.ids[value] = len(self.ids)
            self.where.append((-1, position + 1))
        for index, node in enumerate(self.nodes):
            for position, value in enumerate(node.outputs()):
                self.ids[value] = len(self.ids)
                self.where.append((index, position))

    def calls(self) -> list[tuple[str, Node]]:
        return batchnorm_nodes(self.graph)

    def nested_call(self) -> str | None:
        """A layer called inside control flow, which segments cannot cut through."""
        top = {node for node in self.nodes if node.kind() == BATCH_NORM}
        return next((name for name, node in self.calls() if node not in top), None)

    def _id(self, value: Value) -> int:
        return self.ids.setdefault(value, len(self.ids) + 10**9)  # `self`: no producer

    def ops(self) -> tuple[Op, ...]:
        ops = [Op((), tuple(self.ids[v] for v in self.data_inputs), is_input=True)]
        for node in self.nodes:
            inputs = [*node.inputs(), *_outer_reads(node)]
            written = [inputs[i] for i in _written(node)]
            layer = attribute_path(node.inputsAt(3)) if node.kind() == BATCH_NORM else None
            ops.append(
                Op(
                    inputs=tuple(self._id(v) for v in inputs),
                    outputs=tuple(self.ids[v] for v in node.outputs()),
                    layer=layer,
                    mutates=tuple(self._id(v) for v in written),
                )
            )
        return tuple(ops)

    def segment(self, spec: SegmentSpec, device: torch.device) -> ScriptSegment:
        copy = self.graph.copy()
        copies = list(copy.nodes())
        inputs = list(copy.inputs())

        def twin(value: int) -> Value:
            node, position = self.where[value]
            return inputs[position] if node < 0 else copies[node].outputsAt(position)

        if spec.index > 0:
            for value in spec.inputs:
                cached = copy.addInput()
                cached.setType(twin(value).type())
                twin(value).replaceAllUsesWith(cached)
        _return(copy, [twin(value) for value in spec.outputs])
        kept = {index - 1 for index in spec.ops}  # op 0 stands for the graph's inputs
        for index in reversed(range(len(copies))):
            if index not in kept:
                copies[index].destroy()
        if spec.index > 0:
            for position in reversed(range(1, 1 + len(self.data_inputs))):
                copy.eraseInput(position)
        return ScriptSegment(self.module, _function(copy, f"segment_{spec.index}"), device)

    def probe(self, wanted: Sequence[str]) -> ScriptProbe:
        copy = self.graph.copy()
        chosen = [(name, node) for name, node in batchnorm_nodes(copy) if name in set(wanted)]
        _return(copy, [node.inputsAt(0) for _, node in chosen])
        torch._C._jit_pass_dce(copy)
        return ScriptProbe(self.module, _function(copy, "probe"), [name for name, _ in chosen])


def _return(graph: Any, values: list[Value]) -> None:
    """Make the graph return a tuple of `values`."""
    output = graph.create("prim::TupleConstruct", values, 1)
    output.output().setType(torch._C.TupleType([value.type() for value in values]))
    graph.insertNode(output)
    graph.return_node().replaceInput(0, output.output())


def _function(graph: Any, name: str) -> Any:
    torch._C._jit_pass_dce(graph)
    try:
        graph.lint()
        return torch._C._create_function_from_graph(f"bnstat_{name}", graph)
    except RuntimeError as err:
        raise ModelError(f"cannot instrument this TorchScript module: {err}") from err


class ScriptSegment:
    def __init__(self, module: torch.jit.ScriptModule, function: Any, device: torch.device):
        self._module, self._function, self._device = module._c, function, device

    def run(self, values: Sequence[Any]) -> Sequence[Any]:
        moved = [v.to(self._device) if isinstance(v, torch.Tensor) else v for v in values]
        return self._function(self._module, *moved)  # type: ignore[no-any-return]


class ScriptProbe:
    def __init__(self, module: torch.jit.ScriptModule, function: Any, names: list[str]) -> None:
        self._module, self._function, self._names = module._c, function, names

    def run(self, model_input: Any) -> Iterator[tuple[str, torch.Tensor]]:
        yield from zip(self._names, self._function(self._module, model_input), strict=True)

    def close(self) -> None:
        pass
