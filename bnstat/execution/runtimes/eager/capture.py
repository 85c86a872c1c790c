"""Capture an eager model as a graph: torch.fx first, torch.export where tracing fails.

Symbolic tracing costs a few milliseconds and keeps the model's own modules in the graph;
it fails on data-dependent control flow, which torch.export handles (with the batch
dimension dynamic) at the price of a few seconds. A captured graph is trusted only if it
calls the BatchNorm layers in the order the model itself does, as seen by hooks: a layer
hidden from the tracer would otherwise be measured on the wrong input.

Both capture the forward as the batches call it (`calls.Call`): torch.fx with the
arguments that hold no tensor (flags, None) fixed to their values, torch.export with
every argument's batch dimension dynamic; the graph is fed the same arguments.
"""

from __future__ import annotations

import inspect
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree

from bnstat.execution.batches import tensors_in
from bnstat.execution.runtimes.eager.calls import Call
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


def _call(example: Any) -> Call:
    if not isinstance(example, Call):
        raise CaptureFailed(
            "the call_fn calls the model more than once a batch, or calls BatchNorm layers "
            "outside its call"
        )
    return example


def _arguments(signature: inspect.Signature, call: Call, defaults: bool) -> dict[str, Any]:
    """The call's arguments by the forward's parameter names (with their defaults)."""
    try:
        binding = signature.bind(*call.args, **call.kwargs)
    except (TypeError, ValueError) as err:
        raise CaptureFailed(f"the call does not fit the forward's signature: {err}") from err
    if defaults:
        binding.apply_defaults()
    return dict(binding.arguments)


def _holds_tensors(value: Any) -> bool:
    return next(tensors_in(value), None) is not None


def trace(model: nn.Module, modules: dict[str, Any], example: Any, order: list[str]) -> FxGraph:
    """The model as traced by torch.fx, its BatchNorm modules as `call_module` nodes."""
    signature = inspect.signature(model.forward)
    arguments = _arguments(signature, _call(example), defaults=True)
    fixed = {name: value for name, value in arguments.items() if not _holds_tensors(value)}
    try:
        traced = fx.symbolic_trace(model, concrete_args=fixed or None)
    except Exception as err:  # user code can fail to trace in any way
        raise CaptureFailed(f"torch.fx cannot trace it: {_described(err)}") from err

    def layer_of(node: fx.Node) -> str | None:
        target = str(node.target)
        return target if node.op == "call_module" and target in modules else None

    def feed(call: Call) -> tuple[Any, ...]:
        return tuple(_arguments(signature, call, defaults=True).values())

    return _checked(FxGraph(traced, traced.graph, layer_of, feed), order, "torch.fx")


def export(model: nn.Module, modules: dict[str, Any], example: Any, order: list[str]) -> FxGraph:
    """The model as torch.export captures it, for any batch size of at least two."""
    call = _call(example)
    size = next((len(t) for t in tensors_in((call.args, call.kwargs)) if t.dim()), None)
    batch = torch.export.Dim("batch", min=2)

    def dynamic(leaf: Any) -> dict[int, Any] | None:
        per_sample = isinstance(leaf, torch.Tensor) and leaf.dim() and len(leaf) == size
        return {0: batch} if per_sample else None

    shapes = {
        name: _pytree.tree_map(dynamic, value)
        for name, value in _arguments(inspect.signature(model.forward), call, False).items()
    }
    try:
        with torch.inference_mode(False), _quiet():  # clones: not inference tensors
            args, kwargs = _pytree.tree_map_only(
                torch.Tensor, torch.clone, (call.args, call.kwargs)
            )
            program = torch.export.export(model, args, kwargs, dynamic_shapes=shapes)
        module = program.module()
    except Exception as err:
        raise CaptureFailed(f"torch.export fails: {_described(err)}") from err

    def feed(call: Call) -> tuple[Any, ...]:
        return tuple(_pytree.tree_leaves((call.args, call.kwargs)))

    graph = FxGraph(module, module.graph, call_name, feed)
    return _checked(graph, order, "torch.export")


Method = Callable[[nn.Module, dict[str, Any], Any, list[str]], FxGraph]
METHODS: tuple[tuple[str, Method], ...] = (("torch.fx", trace), ("torch.export", export))
