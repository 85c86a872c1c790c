"""What forward hooks tell about an eager model: its BatchNorm calls, in order, and their inputs.

Hooks see every call of a module, wherever the forward pass makes it, so they are the
ground truth that a captured graph is checked against, and the probe that measures the
model independently of any graph (the verification pass, the fallback sweep). The probe
ends the forward pass once the last wanted call has run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


def call_order(modules: dict[str, nn.Module], run: Callable[[], object]) -> list[str]:
    """Names of the BatchNorm calls made by `run()` (one forward pass), in order."""
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda _m, _i, name=name: order.append(name))
        for name, module in modules.items()
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return order


class _StopForward(Exception):
    """Raised inside the model once every wanted BatchNorm call has been seen."""


class HookProbe:
    """Inputs of the wanted layers' calls, from forward hooks; stops after the last one."""

    def __init__(
        self, model: nn.Module, modules: dict[str, nn.Module], calls: dict[str, int]
    ) -> None:
        self._model = model
        self._calls = sum(calls.values())
        self._seen: list[tuple[str, torch.Tensor]] = []
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in calls]

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
            self._seen.append((name, inputs[0]))
            if len(self._seen) == self._calls:
                raise _StopForward

        return hook

    def run(self, call: Callable[[nn.Module], object]) -> Iterator[tuple[str, torch.Tensor]]:
        """`call(model)` (a batch's call); (layer, input) of every wanted call it makes."""
        self._seen = []
        with contextlib.suppress(_StopForward):
            call(self._model)
        yield from self._seen
        self._seen = []

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
