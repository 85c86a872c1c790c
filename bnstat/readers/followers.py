"""What follows a normalization layer in a graph, in the few kinds the rules care about.

A dead channel (BN004) outputs a constant, and what that means depends on what comes
next: behind a ReLU with bias <= 0 it is always zero; behind a smooth gate (SiLU, GELU,
...) or a residual add it is a constant; a channel shifted far below zero (BN010) is
dormant only if a gate follows. A state dict cannot say, so the rules phrase these
conditionally; TorchScript, `.pt2` and ONNX files hold the graph, and their readers name
the follower of each layer with `follower_of`, walking from the layer's output through
ops that do not change that reading (dropout, reshapes, pooling) to the first that does.

Each format gives the walk a `uses` function: for a value, the ops that read it as
(op name, the value they produce); an empty name means the value goes on unchanged
(into a submodule, say), and "output" that the graph returns it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass


class FollowerKind(enum.Enum):
    RELU = "relu"  # max(x, 0): negative inputs become exactly zero
    GATE = "gate"  # SiLU, GELU, Mish, Hardswish: smooth gates, near zero for negative inputs
    ADD = "add"  # a residual sum
    OTHER = "other"  # any other op (a convolution, a sigmoid, ...)
    OUTPUT = "output"  # the graph returns the layer's output as it is


@dataclass(frozen=True)
class Follower:
    kind: FollowerKind
    op: str  # as the message names it: "ReLU", "SiLU", "add", "Conv", ...


_NAMES = {
    "relu": "ReLU", "relu6": "ReLU6", "clipat0": "Clip at 0", "silu": "SiLU", "swish": "Swish",
    "gelu": "GELU", "mish": "Mish", "hardswish": "Hardswish", "add": "add", "sum": "add",
}  # fmt: skip
_KINDS = {
    **dict.fromkeys(("relu", "relu6", "clipat0"), FollowerKind.RELU),
    **dict.fromkeys(("silu", "swish", "gelu", "mish", "hardswish"), FollowerKind.GATE),
    **dict.fromkeys(("add", "sum"), FollowerKind.ADD),
    "output": FollowerKind.OUTPUT,
}
# Ops after which a constant is still a constant and a value that is almost never
# positive is still almost never positive: the walk looks past them.
_PASS = {
    "", "identity", "dropout", "dropout1d", "dropout2d", "dropout3d", "featuredropout",
    "alphadropout", "flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous",
    "clone", "transpose", "permute", "maxpool", "maxpool1d", "maxpool2d", "maxpool3d",
    "averagepool", "avgpool1d", "avgpool2d", "avgpool3d", "adaptiveavgpool1d",
    "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d", "adaptivemaxpool2d",
    "adaptivemaxpool3d", "globalaveragepool", "globalmaxpool", "mean",
}  # fmt: skip
MAX_STEPS = 256  # values visited from one layer's output


def op_key(name: str) -> str:
    """An op or module class name as the tables know it: `max_pool2d`, `MaxPool2d`, ..."""
    return name.lower().replace("_", "")


Use = tuple[str, Hashable | None]
Uses = Callable[[Hashable], Sequence[Use]]


def _follower(op: str) -> Follower:
    key = op_key(op)
    return Follower(_KINDS.get(key, FollowerKind.OTHER), _NAMES.get(key, op))


def _is_silu(uses: Sequence[Use]) -> bool:
    """x * sigmoid(x), as exporters without a SiLU op write it."""
    return sorted(op_key(op) for op, _ in uses) == ["mul", "sigmoid"]


def knows(name: str) -> bool:
    """Whether an op or module class name is one the walk classifies or looks past."""
    key = op_key(name)
    return bool(key) and (key in _KINDS or key in _PASS)


def follower_of(outputs: Iterable[Hashable], uses: Uses) -> Follower | None:
    """What reads the layer's `outputs` (one per call of the layer), looking past
    pass-through ops; None when the readers disagree (the output feeds a ReLU and a
    convolution) or the walk is too long."""
    found: set[Follower] = set()
    frontier, seen = list(outputs), set()
    while frontier:
        value = frontier.pop()
        if value in seen:
            continue
        seen.add(value)
        if len(seen) > MAX_STEPS:
            return None
        readers = uses(value)
        if _is_silu(readers):
            found.add(Follower(FollowerKind.GATE, "SiLU"))
            continue
        for op, produced in readers:
            if op_key(op) in _PASS and produced is not None:
                frontier.append(produced)
            else:
                found.add(_follower(op))
        if not readers:
            found.add(Follower(FollowerKind.OTHER, "nothing"))  # computed, then unused
    return found.pop() if len(found) == 1 else None
