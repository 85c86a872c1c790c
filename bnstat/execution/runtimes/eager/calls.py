"""How a batch becomes a call of an eager module, so that every pass calls it the same way.

A `Call` holds the arguments of one forward call, bound to the forward's signature (so
every batch gives the same structure): probes and the layer search run `call(module)`,
and a capture turns it into graph inputs (`capture`), so a segment gets exactly what the
model gets. Two `Calls` make them from batches:

- `TensorCalls` (the command line): a tensor of samples, as `model(x)`, or with
  `--input-key`, `model({key: x})`;
- `BatchCalls` (the library): a tensor; a tuple or list whose first element is the input
  (`(images, labels)`); a mapping's value at `input_key`; or what `call_fn(model,
  batch)` does. A call_fn's call is recorded: a pre-hook on the model takes the
  arguments of its call and stops it there. On the first batch, hooks check that this is
  faithful (the call_fn calls the model once and makes every BatchNorm call through it);
  where it is not, each batch runs the call_fn itself (`UserCall`), which the probes can
  follow but no graph can capture.

Tensors reach the model on the runner's device; a call_fn gets the batch as the data
gives it, and the tensors it passes to the model are moved.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from bnstat.errors import DataError
from bnstat.execution.batches import Batch, map_samples, tensors_in
from bnstat.execution.runtimes.eager.hooks import call_order

CallFn = Callable[[nn.Module, Any], Any]


def _moved(value: Any, device: torch.device) -> Any:
    """`value` with every tensor in it (through tuples, lists and mappings) on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _moved(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return type(value)(_moved(item, device) for item in value)
    return value


@dataclass(frozen=True)
class Call:
    """The arguments of one forward call."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, module: nn.Module) -> Any:
        return module(*self.args, **self.kwargs)

    def mapped(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Call:
        """The call with `change` applied to every tensor of the batch's samples."""
        size = next((len(t) for t in tensors_in((self.args, self.kwargs)) if t.dim()), 0)
        args, kwargs = map_samples((self.args, self.kwargs), size, change)
        return Call(tuple(args), dict(kwargs))


def bound(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """The call with its arguments bound to the forward's signature (as given when the
    signature cannot say)."""
    try:
        binding = inspect.signature(module.forward).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return Call(args, kwargs)
    return Call(tuple(binding.args), dict(binding.kwargs))


@dataclass(frozen=True)
class UserCall:
    """A batch run through the caller's `call_fn`, its model arguments moved to `device`."""

    call_fn: CallFn
    batch: Batch
    device: torch.device

    def __call__(self, module: nn.Module) -> Any:
        handle = module.register_forward_pre_hook(
            lambda _m, args, kwargs: (_moved(args, self.device), _moved(kwargs, self.device)),
            with_kwargs=True,
        )
        try:
            return self.call_fn(module, self.batch)
        finally:
            handle.remove()


ModelCall = Call | UserCall


class _Recorded(BaseException):
    """Raised in the model's pre-hook once the call_fn's call has been recorded (a
    BaseException, so that a call_fn's own `except Exception` does not swallow it)."""


def record(call_fn: CallFn, module: nn.Module, batch: Batch) -> Call | None:
    """The arguments `call_fn(module, batch)` calls the model with (None: it does not)."""
    seen: list[Call] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append(Call(args, kwargs))
        raise _Recorded

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        call_fn(module, batch)
    except _Recorded:
        pass
    finally:
        handle.remove()
    return seen[0] if seen else None


class Calls(Protocol):
    def settle(
        self, module: nn.Module, modules: dict[str, Any], batch: Batch, device: torch.device
    ) -> None:
        """Decide, on a first batch, how batches are called (`modules`: its BatchNorms)."""

    def call(self, module: nn.Module, batch: Batch, device: torch.device) -> ModelCall:
        """The batch's call of the module, its tensors on `device`."""


class TensorCalls:
    """Batches of the image or tensor folder: one tensor, maybe under `input_key`."""

    def __init__(self, input_key: str | None = None) -> None:
        self.input_key = input_key

    def settle(
        self, module: nn.Module, modules: dict[str, Any], batch: Batch, device: torch.device
    ) -> None:
        """Nothing to find out: every batch is called the same way."""

    def call(self, module: nn.Module, batch: Batch, device: torch.device) -> ModelCall:
        tensor = batch.to(device, non_blocking=True)
        return Call(({self.input_key: tensor},) if self.input_key else (tensor,))


class BatchCalls:
    """The caller's batches, read as the module docstring says."""

    def __init__(self, call_fn: CallFn | None = None, input_key: str | None = None) -> None:
        self.call_fn, self.input_key = call_fn, input_key
        self.recorded = True  # whether a call_fn's calls are recorded (else run as they are)

    def settle(
        self, module: nn.Module, modules: dict[str, Any], batch: Batch, device: torch.device
    ) -> None:
        """Whether recording a call_fn's call is faithful, from hooks on one batch."""
        call_fn = self.call_fn
        if call_fn is None:
            return
        calls: list[int] = []
        counting = module.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            order = call_order(modules, lambda: UserCall(call_fn, batch, device)(module))
        finally:
            counting.remove()
        recorded = record(call_fn, module, batch) if len(calls) == 1 else None
        self.recorded = recorded is not None and order == call_order(
            modules, lambda: self._bound(module, recorded, device)(module)
        )

    def call(self, module: nn.Module, batch: Batch, device: torch.device) -> ModelCall:
        if self.call_fn is not None:
            recorded = record(self.call_fn, module, batch) if self.recorded else None
            if recorded is None:
                return UserCall(self.call_fn, batch, device)
            return self._bound(module, recorded, device)
        return bound(module, (_moved(self.model_input(batch), device),), {})

    @staticmethod
    def _bound(module: nn.Module, recorded: Call, device: torch.device) -> Call:
        return bound(module, _moved(recorded.args, device), _moved(recorded.kwargs, device))

    def model_input(self, batch: Batch) -> Any:
        """The value the model is called with, without a call_fn."""
        if isinstance(batch, torch.Tensor):
            return batch
        if isinstance(batch, Mapping):
            if self.input_key is None:
                raise DataError(
                    f"the batches are mappings (keys {', '.join(map(str, batch))}): pass "
                    "input_key= to call the model with one of their values, or call_fn="
                )
            if self.input_key not in batch:
                raise DataError(f"input_key {self.input_key!r} is not a key of the batch")
            return batch[self.input_key]
        if isinstance(batch, list | tuple) and batch:
            return batch[0]
        raise DataError(
            f"a batch of {type(batch).__name__}: the model takes a tensor, the first element "
            "of a tuple or list, or a mapping's value at input_key; pass call_fn= for others"
        )
