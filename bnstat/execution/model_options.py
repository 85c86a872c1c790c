"""What every runtime's opener needs: the user's model options and the checks they share.

Which model of the file to recalibrate (`--source`), whether a pickle that would run code
may be copied into a new checkpoint (`--unsafe-load`), which device to run on, and how
to turn a lazily read tensor into a torch tensor. The openers themselves, one per
checkpoint format, are in `runtimes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bnstat.errors import ArgumentError, ModelError, UnsafeCheckpointError, UsageError
from bnstat.execution.data.options import DataOptions
from bnstat.readers.base import RawCheckpoint
from bnstat.readers.pickle_risk import executes_code
from bnstat.stages.find_layers import models_in
from bnstat.stages.find_state_dicts import StateDict
from bnstat.tensor_ref import TensorRef
from bnstat.wording import counted


@dataclass(frozen=True)
class ModelSpec:
    """How to obtain the model: `--arch`, `--arch-kwargs`, `--unsafe-load`, `--source`."""

    arch: str | None = None
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    unsafe_load: bool = False
    source: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    """Everything an opener needs besides the file: the spec, the device, the input key."""

    spec: ModelSpec = field(default_factory=ModelSpec)
    device: str = "auto"
    input_key: str | None = None

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


DEVICES = "expected auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArgumentError("device", f"{name!r}: {DEVICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device", f"{name}: no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        devices = counted(torch.cuda.device_count(), "CUDA device")
        raise ArgumentError("device", f"{name}: only {devices}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ArgumentError("device", f"{name}: MPS is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError("device", f"{name}: {DEVICES}")
    return device


def choose_state(raw: RawCheckpoint, source: str | None) -> StateDict:
    """The state dict to recalibrate: the one named by `--source`, or the only candidate."""
    candidates = [state for state, layers in models_in(raw) if layers]
    if not candidates:
        raise ModelError("the checkpoint has no BatchNorm layers with running statistics")
    if source is not None:
        chosen = [s for s in candidates if (s.name or "") == source]
        if not chosen:
            raise ArgumentError(
                "source", f"{source!r}: no such model in the file; it holds {_names(candidates)}"
            )
        return chosen[0]
    if len(candidates) > 1:
        raise ModelError(
            f"the file holds several models ({_names(candidates)}): choose one with --source"
        )
    return candidates[0]


def _names(states: list[StateDict]) -> str:
    return ", ".join(repr(s.name or "") for s in states)


def refuse_code(raw: RawCheckpoint, spec: ModelSpec) -> None:
    """A file whose pickle would run code is not copied into a new checkpoint unasked."""
    dangerous = sorted(g for g in raw.refused_globals if executes_code(g))
    if dangerous and not spec.unsafe_load:
        raise UnsafeCheckpointError(
            f"the checkpoint's pickle calls {', '.join(dangerous)} (refused, not run); the "
            "recalibrated copy would carry it too: re-export the weights, or pass "
            "--unsafe-load if you trust the file"
        )


def refuse_arch(spec: ModelSpec, what: str) -> None:
    """`--arch` builds a module for a state dict; a model that runs as it is takes none."""
    if spec.arch is not None:
        raise UsageError(f"--arch is for state dicts: {what} runs as it is")


def run_loader(load: Callable[[], Any], what: str) -> Any:
    """Call a loader that runs the user's or the file's code; its failures are ModelErrors."""
    try:
        return load()
    except Exception as err:
        raise ModelError(f"cannot {what}: {type(err).__name__}: {err}") from err


def torch_tensor(ref: TensorRef) -> torch.Tensor:
    """A torch tensor with the stored dtype and values of a lazy tensor."""
    values = torch.from_numpy(ref.read().copy())
    return values.to(torch.bfloat16) if ref.dtype.name == "bfloat16" else values


@dataclass(frozen=True)
class RunRequest:
    """A model run on data, as recalibration and the data diagnosis both ask for it: how
    to build the model, the data folder, how to load it, and the channels to decode
    images to (None: as many as the model takes)."""

    data: Path
    model: ModelRequest = field(default_factory=ModelRequest)
    options: DataOptions = field(default_factory=DataOptions)
    channels: int | None = None
