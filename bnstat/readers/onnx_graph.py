"""The BatchNormalization nodes of an ONNX graph and where their constant inputs are stored.

Shared by the ONNX reader (which reports the statistics) and by ONNX recalibration (which
measures and rewrites them), so that both agree on which nodes are layers, what each
layer is called and which stored tensor each of its inputs comes from.

Exporters store a BatchNorm's scale, bias, mean and variance as initializers or as
Constant nodes (ConstantOfShape for a tensor of one repeated value), and torch's exporter
hides repeated tensors behind Identity nodes (every layer of a model with reset
statistics reads the same zeros), so an input is followed back through Identity nodes to
where its values live. An input computed from anything else is refused: bnstat reports
statistics that are in the file, not ones it would have to run the graph to know.

ONNX does not require node names, and two exports of one model must give the same report
(baselines, SARIF fingerprints), so a layer is named after its node, else after the
convolution or matrix product that feeds it, else after its output; repeats get `#2`, ...

This module needs no `onnx` import at run time: it only reads the parsed protobuf objects.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bnstat.errors import CheckpointError
from bnstat.readers.base import printable
from bnstat.readers.followers import Follower, Use, follower_of

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, NodeProto, TensorProto

BATCHNORM = "BatchNormalization"
DEFAULT_EPS = 1e-5  # the operator's default epsilon
# input position of each BatchNorm tensor, named as a torch state dict names them
SLOTS = {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}
FEEDERS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # whose name can stand for the layer's
FLOAT_ATTRIBUTES = ("value_float", "value_floats")  # of a Constant, besides `value`
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Stored:
    """Where the values of a node input live: in the file, not computed from the input.

    `chain` holds the value names from the consumer back to the stored one (more than one
    when Identity nodes sit between them). `node` is the Constant or ConstantOfShape node
    that produces the last of them, None for an initializer. The values are `tensor` (the
    initializer or the Constant's `value`), or `attribute` (a Constant's `value_float` or
    `value_floats`), or, for ConstantOfShape, `tensor` (its one-element fill value, None
    for the default 0.0) repeated to the shape stored at `shape`.
    """

    chain: tuple[str, ...]
    node: NodeProto | None = None
    tensor: TensorProto | None = None
    attribute: AttributeProto | None = None
    shape: Stored | None = None

    @property
    def is_fill(self) -> bool:
        return self.node is not None and self.node.op_type == "ConstantOfShape"


@dataclass(frozen=True)
class BatchNormNode:
    """One BatchNormalization node: its layer name, epsilon and stored inputs by slot."""

    name: str
    node: NodeProto
    eps: float
    inputs: dict[str, Stored]  # "weight", "bias", "running_mean", "running_var"


def text(value: str | bytes) -> str:
    """A string field of the parsed protobuf as text.

    protobuf hands out `bytes` for a string field that is not valid UTF-8 (a corrupt or
    hostile file); such a name is decoded with replacement characters.
    """
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def is_default_domain(node: NodeProto) -> bool:
    return node.domain in _DEFAULT_DOMAINS


class GraphIndex:
    """Initializers and the producer of every value of one graph, by name."""

    def __init__(self, graph: GraphProto) -> None:
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.producers: dict[str, NodeProto] = {
            name: node for node in graph.node for name in node.output if name
        }

    def stored(self, name: str, fills: bool = True) -> Stored | None:
        """Where `name`'s values are stored, through Identity nodes; None if computed."""
        chain = [name]
        for _ in range(len(self.producers) + 1):  # a longer chain is a cycle
            if name in self.initializers:
                return Stored(tuple(chain), tensor=self.initializers[name])
            node = self.producers.get(name)
            if node is None or not is_default_domain(node):
                return None
            if node.op_type == "Constant":
                return _constant(tuple(chain), node)
            if node.op_type == "ConstantOfShape" and node.input and fills:
                return self._fill(tuple(chain), node)
            if node.op_type != "Identity" or not node.input:
                return None
            name = node.input[0]
            chain.append(name)
        return None

    def _fill(self, chain: tuple[str, ...], node: NodeProto) -> Stored | None:
        shape = self.stored(node.input[0], fills=False)
        if shape is None or shape.tensor is None:
            return None
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return Stored(chain, node=node, tensor=value, shape=shape)


def _constant(chain: tuple[str, ...], node: NodeProto) -> Stored | None:
    for attribute in node.attribute:
        if attribute.name == "value":
            return Stored(chain, node=node, tensor=attribute.t)
        if attribute.name in FLOAT_ATTRIBUTES:
            return Stored(chain, node=node, attribute=attribute)
    return None  # an integer, string or sparse constant: not BatchNorm statistics


def batchnorm_nodes(graph: GraphProto) -> list[BatchNormNode]:
    """Every BatchNormalization node of the main graph, in graph (execution) order."""
    index = GraphIndex(graph)
    nodes = [n for n in graph.node if n.op_type == BATCHNORM and is_default_domain(n)]
    names = unique_names(_base_name(node, index) for node in nodes)
    return [_layer(node, name, index) for node, name in zip(nodes, names, strict=True)]


def _base_name(node: NodeProto, index: GraphIndex) -> str:
    if node.name:
        return text(node.name)
    feeder = index.producers.get(node.input[0]) if node.input else None
    if feeder is not None and feeder.name and feeder.op_type in FEEDERS:
        return text(feeder.name)
    return text(node.output[0]) if node.output and node.output[0] else BATCHNORM


def unique_names(names: Iterable[str]) -> list[str]:
    """Names made safe to print, repeats numbered `#2`, `#3`, ... in order."""
    taken: set[str] = set()
    return [fresh(printable(name), taken) for name in names]


def value_names(graph: GraphProto) -> set[str]:
    """Every value name the graph declares, stores or computes."""
    names = {value.name for value in (*graph.input, *graph.output, *graph.value_info)}
    names.update(tensor.name for tensor in graph.initializer)
    names.update(name for node in graph.node for name in (*node.input, *node.output))
    return names


def fresh(base: str, taken: set[str]) -> str:
    """`base`, or `base#2`, `base#3`, ...: a value name not taken yet (then taken)."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}#{number}"
    taken.add(name)
    return name


def _layer(node: NodeProto, name: str, index: GraphIndex) -> BatchNormNode:
    inputs = {}
    for leaf, position in SLOTS.items():
        value = node.input[position] if len(node.input) > position else ""
        if not value:
            raise CheckpointError(f"BatchNormalization {name} has no {leaf} input")
        stored = index.stored(value)
        if stored is None:
            raise CheckpointError(_computed(name, leaf, value, index))
        inputs[leaf] = stored
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), DEFAULT_EPS)
    return BatchNormNode(name, node, float(eps), inputs)


def layer_followers(graph: GraphProto, layers: Iterable[BatchNormNode]) -> dict[str, Follower]:
    """What reads each layer's output (a Relu, an Add, ...), for the layers where it is clear."""
    readers: dict[Hashable, list[NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {value.name for value in graph.output}
    index = GraphIndex(graph)

    def uses(value: Hashable) -> list[Use]:
        found: list[Use] = [("output", None)] if value in outputs else []
        for node in readers.get(value, []):
            op = "clipat0" if _clips_at_zero(node, index) else text(node.op_type)
            found.append((op, node.output[0] if node.output else None))
        return found

    found = {}
    for layer in layers:
        follower = follower_of(layer.node.output[:1], uses)
        if follower is not None:
            found[layer.name] = follower
    return found


def _clips_at_zero(node: NodeProto, index: GraphIndex) -> bool:
    """A Clip whose lower bound is a stored zero (opset 11 on) or the attribute 0 (before)."""
    if node.op_type != "Clip":
        return False
    if any(attribute.name == "min" and attribute.f == 0.0 for attribute in node.attribute):
        return True
    stored = index.stored(node.input[1], fills=False) if len(node.input) > 1 else None
    tensor = stored.tensor if stored is not None else None
    if tensor is None:
        return False
    values = tensor.raw_data or b"".join(struct.pack("<f", v) for v in tensor.float_data)
    return bool(values) and not any(values)


def _computed(layer: str, leaf: str, value: str, index: GraphIndex) -> str:
    producer = index.producers.get(value)
    origin = "a graph input"
    if producer is not None:
        origin = f"a {printable(text(producer.op_type), 80)} node"
    return (
        f"BatchNormalization {layer}: its {leaf} ({printable(text(value), 80)}) comes from "
        f"{origin}, not from a stored tensor; bnstat reads only stored statistics "
        "(re-export the model with constant folding)"
    )
