"""The independent reference for results computed on a caller's batches: forward hooks on
the eager model, called the caller's way, in eval mode, every input kept in float64."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

Caller = Callable[[nn.Module, Any], object]


def plain(model: nn.Module, batch: Any) -> object:
    return model(batch)


def first(model: nn.Module, batch: Any) -> object:
    return model(batch[0])


def eval_inputs(
    model: nn.Module, batches: Iterable[Any], call: Caller = plain
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm module (by name): mean and unbiased variance of everything it received
    over the batches, with the model in eval mode (its modes are put back)."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, inputs, name=name: seen.setdefault(name, []).append(
                inputs[0].detach().double().transpose(0, 1).reshape(inputs[0].shape[1], -1)
            )
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                call(model, batch)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    result = {}
    for name, chunks in seen.items():
        values = torch.cat(chunks, dim=1)
        result[name] = (values.mean(dim=1), values.var(dim=1))
    return result


def violations(
    model: nn.Module, batches: Iterable[Any], call: Caller = plain, atol: float = 1e-6
) -> list[str]:
    """Layers whose running statistics differ from what they receive in eval mode by more
    than 1e-4 relative (plus `atol`); an empty list means eval-consistent statistics."""
    measured = eval_inputs(model, batches, call)
    assert measured, "no BatchNorm layer was measured"
    bad = []
    for name, module in model.named_modules():
        if name in measured:
            mean, var = measured[name]
            for stored, actual, what in (
                (module.running_mean.detach().double().cpu(), mean.cpu(), "mean"),
                (module.running_var.detach().double().cpu(), var.cpu(), "var"),
            ):
                if not torch.allclose(stored, actual, rtol=1e-4, atol=atol):
                    worst = ((stored - actual).abs() / actual.abs().clamp_min(1e-3)).max().item()
                    bad.append(f"{name}.{what} off by {worst:.1e}")
    return bad
