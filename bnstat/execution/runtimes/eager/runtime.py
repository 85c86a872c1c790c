"""An eager `nn.Module` (built by `--arch`, or unpickled under `--unsafe-load`) as a runtime.

Its BatchNorm layers and their order come from forward hooks on a first small batch.
Its graph comes from torch.fx, else torch.export (`capture`), and runs in segments over
the model's own modules and buffers. A model that neither can capture falls back to one
hook probe per front, the fronts read from the autograd graph (`autograd_graph`). Probes
always use hooks on the real model, so the verification pass never goes through the
captured graph it checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bnstat.errors import BnstatError
from bnstat.execution.loop import model_call
from bnstat.execution.model import Capture, Layer, Model, Origin
from bnstat.execution.runtimes.eager.autograd_graph import call_graph
from bnstat.execution.runtimes.eager.capture import METHODS, CaptureFailed
from bnstat.execution.runtimes.eager.hooks import HookProbe, call_order
from bnstat.execution.runtimes.fx_graph import FxGraph, FxSegment
from bnstat.execution.runtimes.torch_runtime import (
    Checkpoint,
    TorchRunner,
    batchnorm_modules,
    batchnorm_training,
    origin_of,
    torch_model,
)
from bnstat.execution.schedule import SegmentSpec


class EagerRunner(TorchRunner):
    def __init__(self, module: nn.Module, origin: Origin, input_key: str | None = None) -> None:
        self.module = module
        self.modules = batchnorm_modules(module)
        super().__init__(module, self.modules, torch.device(origin.device), origin, input_key)
        self._calls: dict[str, int] = {}
        self._graph: FxGraph | None = None
        self._capture: Capture | None = None
        self._seen: tuple[Any, list[str]] | None = None  # the example and the calls it made

    def prepare(self, batch: torch.Tensor) -> None:
        example = self.model_input(batch[:2])
        try:
            order = call_order(self.modules, lambda: self.module(example))
        except BnstatError:
            raise
        except Exception:  # a model that refuses so few samples: a whole batch
            example = self.model_input(batch)
            order = model_call(
                lambda: call_order(self.modules, lambda: self.module(example)),
                f"a batch of shape {tuple(batch.shape)}",
            )
        first = list(dict.fromkeys(order))
        self._calls = {name: order.count(name) for name in first}
        self.layers = tuple(
            Layer(name, int(self.modules[name].running_mean.numel()), float(self.modules[name].eps))
            for name in first
        )
        self.unreached = tuple(name for name in self.modules if name not in self._calls)
        self._seen = (example, order)

    def capture(self) -> Capture:
        """The graph, captured on first use (the data pass and train-average need none)."""
        if self._capture is None:
            assert self._seen is not None, "prepare() first"
            self._capture = self._captured(*self._seen)
        return self._capture

    def _captured(self, example: Any, order: list[str]) -> Capture:
        reasons = []
        for how, method in METHODS:
            try:
                graph = method(self.module, self.modules, example, order)
            except CaptureFailed as err:
                reasons.append(str(err))
                continue
            self._graph = graph
            return Capture(graph.ops(), how)
        try:
            ops = call_graph(self.modules, self.module, example)
        except Exception:  # a model that cannot run with gradients: one layer a front
            ops = ()
        return Capture(ops, "autograd", refused="; ".join(reasons))

    def segment(self, spec: SegmentSpec) -> FxSegment:
        assert self._graph is not None
        return self._graph.segment(spec, self.accumulate_on)

    def probe(self, layers: Sequence[str]) -> HookProbe:
        return HookProbe(self.module, self.modules, {name: self._calls[name] for name in layers})

    @contextmanager
    def training(self) -> Iterator[bool]:
        """PyTorch itself averages every call (momentum None), at no cost beyond the pass."""
        with batchnorm_training(self.modules, cumulative=True):
            yield True


def eager_model(
    module: nn.Module,
    device: torch.device,
    kind: str,
    checkpoint: Checkpoint | None = None,
    input_key: str | None = None,
) -> Model:
    """An eager module, moved to `device`, as a model (`kind` names where it came from)."""
    module = module.to(device)
    runner = EagerRunner(module, origin_of(kind, device, checkpoint), input_key)
    return torch_model(runner, checkpoint)
