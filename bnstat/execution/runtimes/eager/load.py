"""Build the eager module for a state dict: `--arch` and a strict load, or an unpickled module.

A state dict does not say which network it belongs to, so `--arch module.path:factory`
(or `path/to/file.py:factory`) builds it and the file's tensors are loaded strictly,
with missing, unexpected and misshapen keys listed before any tensor is read. The tensors
come from bnstat's own readers, so Lightning checkpoints and other files that
`weights_only=True` refuses still load. A whole pickled module is loaded with
`torch.load(weights_only=False)` only under `--unsafe-load`, because that runs code from
the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnstat.errors import ModelError
from bnstat.execution.model import Model
from bnstat.execution.model_options import (
    ModelRequest,
    choose_state,
    refuse_code,
    run_loader,
    torch_tensor,
)
from bnstat.execution.runtimes.eager.calls import TensorCalls
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.execution.runtimes.torch_runtime import Checkpoint
from bnstat.readers.base import RawCheckpoint
from bnstat.stages.find_state_dicts import BOOKKEEPING_KEYS, StateDict
from bnstat.wording import counted

SHOWN_KEYS = 8


def open_state_dict(raw: RawCheckpoint, request: ModelRequest) -> Model:
    """The model of a torch or safetensors checkpoint: `--arch`, or `--unsafe-load`."""
    refuse_code(raw, request.spec)
    state = choose_state(raw, request.spec.source)
    checkpoint = Checkpoint(raw, state)
    device, calls = request.torch_device(), TensorCalls(request.input_key)
    if request.spec.arch is not None:
        module = build_from_arch(request.spec.arch, request.spec.arch_kwargs)
        load_state_strictly(module, state)
        return eager_model(module.to(device), device, "arch", checkpoint, calls)
    if state.pickled_module:
        if not request.spec.unsafe_load:
            raise ModelError(
                "this file pickles a whole module, which can only be rebuilt by running code "
                "from it: pass --unsafe-load if you trust the file, or --arch module:factory"
            )
        module = _unpickle_module(raw, state)
        return eager_model(module.to(device), device, "pickled module", checkpoint, calls)
    raise ModelError(
        "a state dict does not say which network it belongs to: pass --arch "
        "package.module:factory or path/to/model.py:factory (and --arch-kwargs JSON)"
    )


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
    module = run_loader(lambda: factory(**kwargs), f"build the model with {arch}")
    if not isinstance(module, nn.Module):
        raise ModelError(f"--arch {arch!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


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
    return f"{counted(len(keys), f'{kind} key')}: {', '.join(keys[:SHOWN_KEYS])}{more}"


def _unpickle_module(raw: RawCheckpoint, state: StateDict) -> nn.Module:
    """The pickled module at `state.name` in the file (trusted by --unsafe-load)."""
    loaded = run_loader(
        lambda: torch.load(raw.local_path, map_location="cpu", weights_only=False),
        "unpickle the module",
    )
    for part in (state.name or "").split("/") if state.name else ():
        loaded = loaded[int(part)] if isinstance(loaded, list | tuple) else loaded[part]
    if not isinstance(loaded, nn.Module):
        raise ModelError(f"{state.name or 'the file'} does not hold an nn.Module")
    return loaded
