"""Build the runnable model that recalibration needs from what the checkpoint holds.

Three sources, in order of trust: a TorchScript archive or a torch.export program runs as
it is (no source code needed); a state dict is loaded strictly into the module that `--arch
module.path:factory` (or `path/to/file.py:factory`) builds; a whole pickled module is
loaded with `torch.load(weights_only=False)` only under `--unsafe-load`, because that
runs code from the file. The tensors of a state dict come from bnstat's own readers, so
Lightning checkpoints and other files that `weights_only=True` refuses still load.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnstat.discovery import models_in
from bnstat.errors import ModelError, UnsafeCheckpointError
from bnstat.layout import BOOKKEEPING_KEYS, StateDict
from bnstat.readers import CheckpointFormat, RawCheckpoint
from bnstat.rules.bn011_code_in_pickle import executes_code
from bnstat.tensor_ref import TensorRef

SHOWN_KEYS = 8


@dataclass(frozen=True)
class ModelSpec:
    """How to obtain the model: `--arch`, `--arch-kwargs`, `--unsafe-load`, `--source`."""

    arch: str | None = None
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    unsafe_load: bool = False
    source: str | None = None


@dataclass
class LoadedModel:
    module: nn.Module
    state: StateDict  # where in the file the statistics live
    origin: str  # "torchscript", "arch" or "pickled module"


def choose_state(raw: RawCheckpoint, source: str | None) -> StateDict:
    """The state dict to recalibrate: the one named by `--source`, or the only candidate."""
    candidates = [state for state, layers in models_in(raw) if layers]
    if not candidates:
        raise ModelError("the checkpoint has no BatchNorm layers with running statistics")
    if source is not None:
        chosen = [s for s in candidates if (s.name or "") == source]
        if not chosen:
            raise ModelError(
                f"--source {source!r}: no such model in the file; it holds {_names(candidates)}"
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


def load_model(raw: RawCheckpoint, spec: ModelSpec, device: torch.device) -> LoadedModel:
    refuse_code(raw, spec)
    state = choose_state(raw, spec.source)
    if raw.format is CheckpointFormat.PT2:
        program = _run_loader(
            lambda: torch.export.load(str(raw.path)), "load the torch.export program"
        )
        return LoadedModel(program.module().to(device), state, "torch.export")
    if raw.format is CheckpointFormat.TORCHSCRIPT:
        module = _run_loader(
            lambda: torch.jit.load(str(raw.path), map_location=device),  # type: ignore[no-untyped-call]
            "load the TorchScript archive",
        )
        return LoadedModel(module, state, "torchscript")
    if spec.arch is not None:
        module = build_from_arch(spec.arch, spec.arch_kwargs)
        load_state_strictly(module, state)
        return LoadedModel(module.to(device), state, "arch")
    if state.pickled_module:
        if not spec.unsafe_load:
            raise ModelError(
                "this file pickles a whole module, which can only be rebuilt by running code "
                "from it: pass --unsafe-load if you trust the file, or --arch module:factory"
            )
        return LoadedModel(_unpickle_module(raw, state).to(device), state, "pickled module")
    raise ModelError(
        "a state dict does not say which network it belongs to: pass --arch "
        "package.module:factory or path/to/model.py:factory (and --arch-kwargs JSON)"
    )


def _run_loader(load: Callable[[], Any], what: str) -> Any:
    try:
        return load()
    except Exception as err:
        raise ModelError(f"cannot {what}: {type(err).__name__}: {err}") from err


def import_factory(arch: str) -> Callable[..., Any]:
    """The callable named by `package.module:attr` or `path/to/file.py:attr`."""
    target, sep, attribute = arch.rpartition(":")
    if not sep or not target or not attribute:
        raise ModelError(f"--arch {arch!r}: expected package.module:factory or file.py:factory")
    try:
        module = _import_file(Path(target)) if target.endswith(".py") else _import_module(target)
        factory: Any = module
        for part in attribute.split("."):
            factory = getattr(factory, part)
    except ModelError:
        raise
    except Exception as err:  # the user's code may fail in any way while importing
        raise ModelError(f"--arch {arch!r}: cannot import: {type(err).__name__}: {err}") from err
    if not callable(factory):
        raise ModelError(f"--arch {arch!r}: {attribute} is not callable")
    return factory  # type: ignore[no-any-return]


def _import_module(name: str) -> Any:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the working directory first
    return importlib.import_module(name)


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"--arch: no such file {path}")
    name = f"bnstat_arch_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"--arch: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent.resolve()))  # for the file's own sibling imports
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return module


def build_from_arch(arch: str, kwargs: Mapping[str, Any]) -> nn.Module:
    factory = import_factory(arch)
    module = _run_loader(lambda: factory(**kwargs), f"build the model with {arch}")
    if not isinstance(module, nn.Module):
        raise ModelError(f"--arch {arch!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def torch_tensor(ref: TensorRef) -> torch.Tensor:
    """A torch tensor with the stored dtype and values of a lazy tensor."""
    values = torch.from_numpy(ref.read().copy())
    return values.to(torch.bfloat16) if ref.dtype.name == "bfloat16" else values


def load_state_strictly(module: nn.Module, state: StateDict) -> None:
    """`load_state_dict(strict=True)`, with missing and unexpected keys listed on failure.

    Keys and shapes are compared before any tensor is read, so a file with thousands of
    foreign tensors costs nothing to reject.
    """
    refs = {k: t for k, t in state.tensors.items() if k not in BOOKKEEPING_KEYS}
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(refs)), sorted(set(refs) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"the checkpoint does not match the model built by --arch: "
            f"{_key_list('missing', missing)}{'; ' if missing and unexpected else ''}"
            f"{_key_list('unexpected', unexpected)}"
        )
    wrong = [k for k, t in refs.items() if t.numel != expected[k].numel()]
    if wrong:
        shapes = ", ".join(
            f"{k} {refs[k].shape} vs {tuple(expected[k].shape)}" for k in wrong[:SHOWN_KEYS]
        )
        raise ModelError(
            f"the checkpoint does not match the model built by --arch: shapes differ: {shapes}"
        )
    try:
        module.load_state_dict({k: torch_tensor(t) for k, t in refs.items()}, strict=True)
    except RuntimeError as err:  # shapes of the same size but another layout
        raise ModelError(f"the checkpoint does not match the model built by --arch: {err}") from err


def _key_list(kind: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f", ... +{len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{len(keys)} {kind} key(s): {', '.join(keys[:SHOWN_KEYS])}{more}"


def _unpickle_module(raw: RawCheckpoint, state: StateDict) -> nn.Module:
    """The pickled module at `state.name` in the file (trusted by --unsafe-load)."""
    loaded = _run_loader(
        lambda: torch.load(raw.path, map_location="cpu", weights_only=False), "unpickle the module"
    )
    for part in (state.name or "").split("/") if state.name else ():
        loaded = loaded[int(part)] if isinstance(loaded, list | tuple) else loaded[part]
    if not isinstance(loaded, nn.Module):
        raise ModelError(f"{state.name or 'the file'} does not hold an nn.Module")
    return loaded


def input_channels(module: nn.Module) -> int | None:
    """Channels the model's first convolution expects, to decode images to match."""
    for parameter in module.parameters():
        if parameter.dim() >= 3:
            return int(parameter.shape[1])
    return None
