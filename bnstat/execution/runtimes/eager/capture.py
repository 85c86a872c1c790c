"""Capture an eager model as a graph: torch.fx first, torch.export where tracing fails.

Symbolic tracing costs a few milliseconds and keeps the model's own modules in the graph;
it fails on data-dependent control flow, which torch.export handles (with the batch
dimension dynamic) at the price of a few seconds. A captured graph is trusted only if it
calls the BatchNorm layers in the order the model itself does, as seen by hooks: a layer
hidden from the tracer would otherwise be measured on the wrong input.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree

from bnstat.execution.runtimes.exported.program import call_name
from bnstat.execution.runtimes.fx_graph import FxGraph


class CaptureFailed(Exception):
    """Neither capture gives a graph to trust; the message says why, per method."""


def _described(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first}".rstrip(": ")


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.export logs warnings and prints graphs on the way to a failure; a failed
    capture is only a reason to fall back, and the report says it in one line."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _checked(graph: FxGraph, order: list[str], how: str) -> FxGraph:
    found = [name for name, _ in graph.calls()]
    if found != order:
        raise CaptureFailed(f"{how} sees other BatchNorm calls than the model makes")
    return graph


def trace(model: nn.Module, modules: dict[str, Any], example: Any, order: list[str]) -> FxGraph:
    """The model as traced by torch.fx, its BatchNorm modules as `call_module` nodes."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception as err:  # user code can fail to trace in any way
        raise CaptureFailed(f"torch.fx cannot trace it: {_described(err)}") from err

    def layer_of(node: fx.Node) -> str | None:
        target = str(node.target)
        return target if node.op == "call_module" and target in modules else None

    return _checked(FxGraph(traced, traced.graph, layer_of, lambda x: (x,)), order, "torch.fx")


def export(model: nn.Module, modules: dict[str, Any], example: Any, order: list[str]) -> FxGraph:
    """The model as torch.export captures it, for any batch size of at least two."""
    batch = torch.export.Dim("batch", min=2)
    shapes = _pytree.tree_map(lambda leaf: {0: batch}, example)
    try:
        with torch.inference_mode(False), _quiet():
            plain = _pytree.tree_map(lambda leaf: leaf.clone(), example)  # not inference tensors
            program = torch.export.export(model, (plain,), dynamic_shapes=(shapes,))
        module = program.module()
    except Exception as err:
        raise CaptureFailed(f"torch.export fails: {_described(err)}") from err
    graph = FxGraph(module, module.graph, call_name, lambda x: tuple(_pytree.tree_leaves(x)))
    return _checked(graph, order, "torch.export")


Method = Callable[[nn.Module, dict[str, Any], Any, list[str]], FxGraph]
METHODS: tuple[tuple[str, Method], ...] = (("torch.fx", trace), ("torch.export", export))
