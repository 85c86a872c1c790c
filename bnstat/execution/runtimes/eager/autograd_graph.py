"""Which BatchNorm calls feed which, read from the autograd graph of one small forward pass.

A model that neither torch.fx nor torch.export can capture still records, when run with
gradients on, which operations each tensor came from. Walking back from every BatchNorm
call's input through `grad_fn` until other BatchNorm calls' outputs are met gives the
layers upstream of it: enough to group the layers into fronts for the fallback sweep
(`schedule.fronts`), though not to run the model in segments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bnstat.execution.schedule import Op

INPUT = 0  # the value id of the model input


def _upstream(
    start: Any, outputs: dict[Any, int], memo: dict[Any, frozenset[int]]
) -> frozenset[int]:
    """Indices of the calls whose outputs `start` (a grad_fn) depends on, nearest first."""
    stack = [(start, False)]
    while stack:
        node, expanded = stack.pop()
        if node is None or node in memo:
            continue
        parents = [parent for parent, _ in node.next_functions if parent is not None]
        if node in outputs:
            memo[node] = frozenset({outputs[node]})
        elif expanded:
            memo[node] = frozenset().union(*(memo.get(p, frozenset()) for p in parents))
        else:
            stack.append((node, True))
            stack.extend((parent, False) for parent in parents if parent not in memo)
    return memo.get(start, frozenset()) if start is not None else frozenset()


def call_graph(modules: dict[str, nn.Module], run: Callable[[], object]) -> tuple[Op, ...]:
    """Ops for `schedule.fronts`: per call, its input computed from upstream call outputs,
    from one forward pass `run()` with gradients on."""
    calls: list[tuple[str, Any, Any]] = []  # (layer, input grad_fn, output grad_fn)
    handles = [
        module.register_forward_hook(
            lambda _m, inputs, output, name=name: calls.append(
                (name, inputs[0].grad_fn, output.grad_fn)
            )
        )
        for name, module in modules.items()
    ]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    outputs = {out: index for index, (_, _, out) in enumerate(calls) if out is not None}
    memo: dict[Any, frozenset[int]] = {}
    ops = [Op(inputs=(), outputs=(INPUT,), is_input=True)]
    for index, (name, source, _) in enumerate(calls):
        feeding, produced = 2 * index + 1, 2 * index + 2
        upstream = sorted(_upstream(source, outputs, memo))
        ops.append(Op(inputs=(INPUT, *(2 * i + 2 for i in upstream)), outputs=(feeding,)))
        ops.append(Op(inputs=(feeding,), outputs=(produced,), layer=name))
    return tuple(ops)
