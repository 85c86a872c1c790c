"""A torch.export program (`.pt2`) as a runtime: no source code needed.

The program's unlifted module is an fx graph whose BatchNorm layers are `batch_norm` calls
on its own buffers (`program`). It runs in the mode it was exported in (eval), so only
the exact method applies; a program exported for one batch size runs only batches of
that size, and the samples of a last, smaller batch are left out and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree

from bnstat.execution.model import Capture, Layer, Model, Origin, Takes, cannot_train
from bnstat.execution.model_options import (
    ModelRequest,
    choose_state,
    refuse_arch,
    refuse_code,
    run_loader,
)
from bnstat.execution.runtimes.exported.program import (
    call_name,
    exported_batchnorms,
    static_batch,
)
from bnstat.execution.runtimes.fx_graph import FxGraph, FxProbe, FxSegment
from bnstat.execution.runtimes.torch_runtime import (
    Checkpoint,
    TorchRunner,
    origin_of,
    torch_model,
)
from bnstat.execution.schedule import SegmentSpec
from bnstat.readers.base import RawCheckpoint


def leaves(model_input: Any) -> tuple[Any, ...]:
    return tuple(_pytree.tree_leaves(model_input))


class ExportedRunner(TorchRunner):
    evaluates = False  # a program runs in the mode it was exported in, and refuses eval()

    def __init__(
        self, program: fx.GraphModule, origin: Origin, input_key: str | None = None
    ) -> None:
        device = torch.device(origin.device)
        self.program = program.to(device)
        self.graph = FxGraph(program, program.graph, call_name, leaves)
        self.modules = exported_batchnorms(program)
        super().__init__(program, self.modules, device, origin, input_key)
        self.layers = tuple(
            Layer(name, int(layer.running_mean.numel()), layer.eps)
            for name, layer in self.modules.items()
        )
        self.takes = Takes(self.takes.channels, static_batch(program))

    def prepare(self, batch: torch.Tensor) -> None:
        """Nothing to find out by running it: its graph lists the layers and their order."""

    def capture(self) -> Capture:
        return Capture(self.graph.ops(), "torch.export")

    def segment(self, spec: SegmentSpec) -> FxSegment:
        return self.graph.segment(spec, self.accumulate_on)

    def probe(self, layers: Sequence[str]) -> FxProbe:
        return self.graph.probe(layers)

    def training(self) -> AbstractContextManager[bool]:
        raise cannot_train("a torch.export program runs in the mode it was exported in")


def open_program(raw: RawCheckpoint, request: ModelRequest) -> Model:
    """The model of a torch.export archive; it needs no `--arch`."""
    refuse_code(raw, request.spec)
    refuse_arch(request.spec, "a torch.export program")
    state = choose_state(raw, request.spec.source)
    program = run_loader(
        lambda: torch.export.load(str(raw.local_path)), "load the torch.export program"
    )
    checkpoint = Checkpoint(raw, state)
    return exported_model(program.module(), request.torch_device(), checkpoint, request.input_key)


def exported_model(
    program: fx.GraphModule,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
    input_key: str | None = None,
) -> Model:
    """A torch.export program's unlifted module, moved to `device`, as a model."""
    runner = ExportedRunner(program, origin_of("torch.export", device, checkpoint), input_key)
    return torch_model(runner, checkpoint)
