"""A TorchScript archive, scripted or traced, as a runtime: no source code needed.

Layers, their order and their eps come from the inlined graph's `batch_norm` calls (a
traced module has no `eps` attribute: it is a constant of the call). The statistics live
in the BatchNorm submodules' buffers, which the graph reads. A traced module has its
BatchNorm mode frozen into the graph at trace time, so the train-mode average is refused
for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from bnstat.execution.model import Capture, Layer, Model, Origin, cannot_train
from bnstat.execution.model_options import (
    ModelRequest,
    choose_state,
    refuse_arch,
    refuse_code,
    run_loader,
)
from bnstat.execution.runtimes.torch_runtime import (
    Checkpoint,
    TorchRunner,
    batchnorm_modules,
    batchnorm_training,
    origin_of,
    torch_model,
)
from bnstat.execution.runtimes.torchscript.graph import (
    ScriptGraph,
    ScriptProbe,
    ScriptSegment,
    constant,
)
from bnstat.execution.schedule import SegmentSpec
from bnstat.readers.base import RawCheckpoint

DEFAULT_EPS = 1e-5


class ScriptRunner(TorchRunner):
    def __init__(
        self, module: torch.jit.ScriptModule, origin: Origin, input_key: str | None = None
    ) -> None:
        self.module = module
        self.graph = ScriptGraph(module)
        calls = self.graph.calls()
        first: dict[str, object] = {}
        for name, node in calls:
            first.setdefault(name, node)
        every = batchnorm_modules(module)
        self.modules = {name: every[name] for name in first}
        super().__init__(module, self.modules, torch.device(origin.device), origin, input_key)
        self.layers = tuple(
            Layer(name, int(self.modules[name].running_mean.numel()), self._eps(name, node))
            for name, node in first.items()
        )
        self.unreached = tuple(name for name in every if name not in first)
        self._frozen = any(constant(node.inputsAt(5)) is not None for _, node in calls)

    def _eps(self, name: str, node: object) -> float:
        eps = constant(node.inputsAt(7))  # type: ignore[attr-defined]
        return (
            float(eps)
            if eps is not None
            else float(getattr(self.modules[name], "eps", DEFAULT_EPS))
        )

    def prepare(self, batch: torch.Tensor) -> None:
        """Nothing to find out by running it: its graph lists the layers and their order."""

    def capture(self) -> Capture:
        nested = self.graph.nested_call()
        refused = f"layer {nested} is called inside control flow" if nested else None
        return Capture(self.graph.ops(), "TorchScript", refused)

    def segment(self, spec: SegmentSpec) -> ScriptSegment:
        return self.graph.segment(spec, self.accumulate_on)

    def probe(self, layers: Sequence[str]) -> ScriptProbe:
        return self.graph.probe(layers)

    @contextmanager
    def training(self) -> Iterator[bool]:
        """Training mode; the momentum is compiled in, so the estimator averages the calls."""
        if self._frozen:
            raise cannot_train(
                "a traced TorchScript model runs BatchNorm in the mode it was traced in"
            )
        with batchnorm_training(self.modules, cumulative=False):
            yield False


def open_torchscript(raw: RawCheckpoint, request: ModelRequest) -> Model:
    """The model of a TorchScript archive; it needs no `--arch`."""
    refuse_code(raw, request.spec)
    refuse_arch(request.spec, "a TorchScript archive")
    state = choose_state(raw, request.spec.source)
    device = request.torch_device()
    module = run_loader(
        lambda: torch.jit.load(str(raw.local_path), map_location=device),  # type: ignore[no-untyped-call]
        "load the TorchScript archive",
    )
    return script_model(module, device, Checkpoint(raw, state), request.input_key)


def script_model(
    module: torch.jit.ScriptModule,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
    input_key: str | None = None,
) -> Model:
    """A TorchScript module (on `device`) as a model."""
    runner = ScriptRunner(module, origin_of("torchscript", device, checkpoint), input_key)
    return torch_model(runner, checkpoint)
