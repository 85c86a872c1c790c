"""Where a caller's module runs, without moving it for good.

By default a module runs where it is: the device of its first parameter (or buffer).
Asked for another device, every parameter and buffer moves there for the run, in place
(`tensor.data`), and back where it was afterwards, whatever happens: the caller's
references to its tensors (an optimizer's, an EMA helper's) stay valid, the new
statistics included, and each tensor ends on its own device again (a model split over
devices stays split).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return list(itertools.chain(module.parameters(), module.buffers()))


def home_device(module: nn.Module) -> torch.device:
    """Where the module runs by default: its first parameter's or buffer's device."""
    return next((tensor.device for tensor in _tensors(module)), torch.device("cpu"))


@contextmanager
def placed(module: nn.Module, device: torch.device) -> Iterator[None]:
    """The module on `device` for the block; every tensor back where it was after it."""
    tensors = _tensors(module)
    homes = [tensor.device for tensor in tensors]
    if all(home == device for home in homes):
        yield
        return
    try:
        with torch.no_grad():
            for tensor in tensors:
                tensor.data = tensor.data.to(device)
        yield
    finally:
        with torch.no_grad():
            for tensor, home in zip(tensors, homes, strict=True):
                tensor.data = tensor.data.to(home)
