"""A torch.export program (`.pt2`) as a runtime: no source code needed.

The program's unlifted module is an fx graph whose BatchNorm layers are `batch_norm` calls
on its own buffers (`program`). It runs in the mode it was exported in (eval), so only
the exact method applies; a program exported for one batch size runs only batches of
that size, and the samples of a last, smaller batch are left out and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree

from bnstat.errors import ModelError
from bnstat.readers.base import RawCheckpoint
from bnstat.recalibrate.model_source import (
    ModelRequest,
    choose_state,
    refuse_arch,
    refuse_code,
    run_loader,
)
from bnstat.recalibrate.passes import Passes
from bnstat.recalibrate.runtime import Capture, Layer
from bnstat.recalibrate.runtimes.exported.program import (
    call_name,
    exported_batchnorms,
    static_batch,
)
from bnstat.recalibrate.runtimes.fx_graph import FxGraph, FxProbe, FxSegment
from bnstat.recalibrate.runtimes.torch_runtime import Checkpoint, TorchRuntime
from bnstat.recalibrate.schedule import SegmentSpec
from bnstat.recalibrate.train_average import Averages


def leaves(model_input: Any) -> tuple[Any, ...]:
    return tuple(_pytree.tree_leaves(model_input))


class ExportedRuntime(TorchRuntime):
    origin = "torch.export"

    evaluates = False  # a program runs in the mode it was exported in, and refuses eval()

    def __init__(
        self,
        program: fx.GraphModule,
        device: torch.device,
        checkpoint: Checkpoint | None = None,
        input_key: str | None = None,
    ) -> None:
        self.program = program.to(device)
        self.graph = FxGraph(program, program.graph, call_name, leaves)
        self.modules = exported_batchnorms(program)
        super().__init__(program, self.modules, device, checkpoint, input_key)
        self.layers = tuple(
            Layer(name, int(layer.running_mean.numel()), layer.eps)
            for name, layer in self.modules.items()
        )
        self.exact_batch = static_batch(program)

    def prepare(self, batch: torch.Tensor) -> None:
        """Nothing to find out by running it: its graph lists the layers and their order."""

    def capture(self) -> Capture:
        return Capture(self.graph.ops(), "torch.export")

    def segment(self, spec: SegmentSpec) -> FxSegment:
        return self.graph.segment(spec, self.accumulate_on)

    def probe(self, layers: Sequence[str]) -> FxProbe:
        return self.graph.probe(layers)

    def train_average(self, passes: Passes) -> Averages:
        raise ModelError(
            "--method train-average needs training mode, and a torch.export program runs in "
            "the mode it was exported in: use the default method"
        )


def open_program(raw: RawCheckpoint, request: ModelRequest) -> ExportedRuntime:
    """The runtime of a torch.export archive; it needs no `--arch`."""
    refuse_code(raw, request.spec)
    refuse_arch(request.spec, "a torch.export program")
    state = choose_state(raw, request.spec.source)
    program = run_loader(
        lambda: torch.export.load(str(raw.local_path)), "load the torch.export program"
    )
    return ExportedRuntime(
        program.module(), request.torch_device(), Checkpoint(raw, state), request.input_key
    )
