"""torch.export programs: their BatchNorm layers are calls in a graph, not modules.

`torch.export.load(path).module()` (or `export(model).module()`) runs the exported graph;
each BatchNorm is an `aten.batch_norm` (or `_native_batch_norm_legit_no_training`) call
that reads buffers owned by the program, with eps baked into the call.
`ExportedBatchNorm` presents such a call with the attributes of a BatchNorm module
(buffers, eps), so the rest of recalibration treats both alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx


def is_batchnorm_call(node: fx.Node) -> bool:
    return node.op == "call_function" and "batch_norm" in str(node.target) and len(node.args) >= 5


def _buffer_target(node: Any) -> str | None:
    return str(node.target) if isinstance(node, fx.Node) and node.op == "get_attr" else None


def call_name(node: fx.Node) -> str | None:
    """The layer a batch_norm call belongs to: the prefix of the running_mean it reads."""
    if not is_batchnorm_call(node):
        return None
    target = _buffer_target(node.args[3])
    if target is None or not target.endswith("running_mean"):
        return None
    return target.removesuffix("running_mean").removesuffix(".")


class ExportedBatchNorm:
    """A batch_norm call of a program, with a BatchNorm module's attributes."""

    def __init__(self, program: fx.GraphModule, node: fx.Node) -> None:
        self._program = program
        self._mean, self._var = _buffer_target(node.args[3]), _buffer_target(node.args[4])
        prefix = call_name(node)
        self._count = f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"
        eps: Any = node.kwargs.get("eps", node.args[7] if len(node.args) > 7 else 1e-5)
        self.eps = float(eps)

    @property
    def running_mean(self) -> torch.Tensor:
        return self._program.get_buffer(str(self._mean))

    @property
    def running_var(self) -> torch.Tensor:
        return self._program.get_buffer(str(self._var))

    @property
    def num_batches_tracked(self) -> torch.Tensor | None:
        try:
            return self._program.get_buffer(self._count)
        except AttributeError:
            return None


def exported_batchnorms(program: fx.GraphModule) -> dict[str, ExportedBatchNorm]:
    layers: dict[str, ExportedBatchNorm] = {}
    for node in program.graph.nodes:
        name = call_name(node)
        if name is not None and name not in layers:
            layers[name] = ExportedBatchNorm(program, node)
    return layers


def static_batch(program: fx.GraphModule) -> int | None:
    """The batch size a program was exported for, when its batch dimension is static."""
    for node in program.graph.nodes:
        if node.op == "placeholder":
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            if shape is not None and len(shape) > 0:
                return shape[0] if isinstance(shape[0], int) else None
    return None
