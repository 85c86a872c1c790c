"""What `bnstat.recalibrate` and `bnstat.diagnose` share: a caller's module and data, checked
and opened for the engine.

The module is unwrapped (`AveragedModel`, DDP, `torch.compile`: the engine works on the
module inside, whose buffers are the wrapper's), run where it is unless `device` says
otherwise (and then put back), in eval mode with no autograd, its modes restored after.
The data is iterated once (`execution.caller_data`); its batches are called as the
caller says (`call_fn`, `input_key`; see `runtimes.eager.calls`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from bnstat.api.arguments import at_least, require
from bnstat.errors import ArgumentError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bnstat.execution.caller_data import CallerData
    from bnstat.execution.loop import Progress
    from bnstat.execution.model import Model, Origin
    from bnstat.recalibrate.reporting import DataSummary

Data = Iterable[Any] | Callable[[], Iterable[Any]]
CallFn = Callable[["nn.Module", Any], Any]
Device = Union[str, "torch.device", None]
DEFAULT_CACHE_MB = 2048


class Opened(NamedTuple):
    """The caller's module as the engine runs it, its data, and what the report says (a
    named tuple: `dataclasses` would cost `import bnstat` its imports)."""

    model: Model
    data: CallerData
    origin: Origin
    prefix: str  # the wrappers' key prefix (`module.` for an AveragedModel)
    budget: int  # bytes for kept batches and cached activations
    how: str  # how the model gets a batch, in words

    def summary(self) -> DataSummary:
        from bnstat.execution.batches import batch_size, described
        from bnstat.recalibrate.reporting import DataSummary

        first = self.data.first
        if first is None:
            return DataSummary("batches", 0, "no batches", None)
        text = f"the caller's batches, {self.how}; the first is {described(first)}"
        return DataSummary("batches", batch_size(first), text, None)


def _checked(model: Any, data: Any, call_fn: Any, input_key: Any) -> None:
    from torch import jit, nn

    require("model", model, nn.Module, "a torch.nn.Module")
    if isinstance(model, jit.ScriptModule):
        raise TypeError(
            "model is a TorchScript module, which runs without hooks: pass the eager module, "
            "or save it and run `bnstat recalibrate` on the file"
        )
    if isinstance(data, str | bytes | os.PathLike) or not (
        isinstance(data, Iterable) or callable(data)
    ):
        raise TypeError(
            f"data must be an iterable of batches (a DataLoader, a list) or a function "
            f"returning one, not {type(data).__name__}"
        )
    if call_fn is not None and not callable(call_fn):
        raise TypeError(
            f"call_fn must be a function (model, batch) or None, not {type(call_fn).__name__}"
        )
    if input_key is not None:
        require("input_key", input_key, str, "a str or None")
    if call_fn is not None and input_key is not None:
        raise ArgumentError("input_key", "cannot be given with call_fn: call_fn reads the batch")


def _device(device: Device, module: nn.Module) -> torch.device:
    """`device`, or where the module is (None)."""
    import torch

    from bnstat.execution.model_options import resolve_device
    from bnstat.execution.runtimes.eager.placement import home_device

    if device is None:
        return home_device(module)
    require("device", device, (str, torch.device), "a str, a torch.device or None")
    chosen = resolve_device(str(device))
    if chosen.type == "cuda" and chosen.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return chosen


def _how(call_fn: CallFn | None, input_key: str | None) -> str:
    if call_fn is not None:
        return "through call_fn"
    if input_key is not None:
        return f"the model called with its {input_key!r}"
    return "the model called with it (a tuple's or list's first element)"


@contextmanager
def opened(
    model: nn.Module,
    data: Data,
    *,
    device: Device,
    call_fn: CallFn | None,
    input_key: str | None,
    max_samples: int | None,
    cache_mb: int | None,
) -> Iterator[Opened]:
    """The module and data opened for the engine, for the block (see the docstring)."""
    _checked(model, data, call_fn, input_key)
    at_least("max_samples", max_samples, 1)
    megabytes = at_least("cache_mb", cache_mb, 0)
    from bnstat.execution.caller_data import CallerData
    from bnstat.execution.model import Origin
    from bnstat.execution.runtimes.eager.calls import BatchCalls
    from bnstat.execution.runtimes.eager.placement import placed
    from bnstat.execution.runtimes.eager.runtime import eager_model
    from bnstat.execution.runtimes.eager.wrappers import unwrapped

    inner, prefix = unwrapped(model)
    target = _device(device, inner)
    budget = (DEFAULT_CACHE_MB if megabytes is None else megabytes) * 2**20
    with placed(inner, target):
        engine = eager_model(inner, target, "module", calls=BatchCalls(call_fn, input_key))
        origin = Origin("module", prefix.rstrip(".") or None, str(target))
        source = CallerData(data, budget, max_samples)
        yield Opened(engine, source, origin, prefix, budget, _how(call_fn, input_key))


@contextmanager
def progress_bar(shown: bool) -> Iterator[Progress | None]:
    """A progress bar on stderr when asked for (`progress=True`), else none."""
    require("progress", shown, bool, "a bool")
    if not shown:
        yield None
        return
    from bnstat.cli.progress import TerminalProgress

    bar = TerminalProgress()
    try:
        yield bar
    finally:
        bar.close()
