"""An eager `nn.Module` (built by `--arch`, unpickled under `--unsafe-load`, or the caller's
own module in memory) as a runtime.

Batches become its calls as `calls` says: the folder's tensors, or the caller's tuples,
dicts and `call_fn`. Its BatchNorm layers and their order come from forward hooks on a
first small batch.
Its graph comes from torch.fx, else torch.export (`capture`), and runs in segments over
the model's own modules and buffers. A model that neither can capture falls back to one
hook probe per front, the fronts read from the autograd graph (`autograd_graph`). Probes
always use hooks on the real model, so the verification pass never goes through the
captured graph it checks. The module stays where it is: whoever owns it puts it on the
device first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bnstat.errors import BnstatError
from bnstat.execution.batches import Batch, described, head
from bnstat.execution.loop import model_call
from bnstat.execution.model import Capture, Layer, Model, Origin
from bnstat.execution.runtimes.eager.autograd_graph import call_graph
from bnstat.execution.runtimes.eager.calls import Call, Calls, ModelCall, TensorCalls
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
    def __init__(self, module: nn.Module, origin: Origin, calls: Calls) -> None:
        self.module = module
        self.modules = batchnorm_modules(module)
        super().__init__(module, self.modules, torch.device(origin.device), origin, None)
        self.calls = calls
        self._layer_calls: dict[str, int] = {}
        self._graph: FxGraph | None = None
        self._capture: Capture | None = None
        self._seen: tuple[ModelCall, list[str]] | None = None  # the example and its calls

    def model_input(self, batch: Batch) -> ModelCall:
        return self.calls.call(self.module, batch, self.accumulate_on)

    def prepare(self, batch: Batch) -> None:
        try:
            example, order = self._first_calls(head(batch, 2))
        except BnstatError:
            raise
        except Exception:  # a model that refuses so few samples: a whole batch
            example, order = model_call(lambda: self._first_calls(batch), described(batch))
        first = list(dict.fromkeys(order))
        self._layer_calls = {name: order.count(name) for name in first}
        self.layers = tuple(
            Layer(name, int(self.modules[name].running_mean.numel()), float(self.modules[name].eps))
            for name in first
        )
        self.unreached = tuple(name for name in self.modules if name not in self._layer_calls)
        self._seen = (example, order)

    def _first_calls(self, batch: Batch) -> tuple[ModelCall, list[str]]:
        """How the batch is called, and the BatchNorm calls that makes."""
        self.calls.settle(self.module, self.modules, batch, self.accumulate_on)
        example = self.model_input(batch)
        return example, call_order(self.modules, lambda: example(self.module))

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
            ops = call_graph(self.modules, lambda: _with_gradients(example)(self.module))
        except Exception:  # a model that cannot run with gradients: one layer a front
            ops = ()
        return Capture(ops, "autograd", refused="; ".join(reasons))

    def segment(self, spec: SegmentSpec) -> FxSegment:
        assert self._graph is not None
        return self._graph.segment(spec, self.accumulate_on)

    def probe(self, layers: Sequence[str]) -> HookProbe:
        calls = {name: self._layer_calls[name] for name in layers}
        return HookProbe(self.module, self.modules, calls)

    @contextmanager
    def training(self) -> Iterator[bool]:
        """PyTorch itself averages every call (momentum None), at no cost beyond the pass."""
        with batchnorm_training(self.modules, cumulative=True):
            yield True


def _with_gradients(example: ModelCall) -> ModelCall:
    """The call with its floating-point inputs requiring gradients (a call_fn's as it is)."""
    if not isinstance(example, Call):
        return example
    return example.mapped(lambda tensor: tensor.clone().requires_grad_(tensor.is_floating_point()))


def eager_model(
    module: nn.Module,
    device: torch.device,
    kind: str,
    checkpoint: Checkpoint | None = None,
    calls: Calls | None = None,
) -> Model:
    """An eager module, already on `device`, as a model (`kind` names where it came from);
    `calls` turns batches into its calls (default: one tensor of samples each)."""
    runner = EagerRunner(module, origin_of(kind, device, checkpoint), calls or TensorCalls())
    return torch_model(runner, checkpoint)
