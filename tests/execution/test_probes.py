"""The probe of eager models (`runtimes.eager.hooks`): the BatchNorm calls in execution
order, and their inputs, against what the model computes step by step."""

from __future__ import annotations

import torch
from torch import nn

from bnstat.execution.runtimes.eager.calls import Call
from bnstat.execution.runtimes.eager.hooks import HookProbe, call_order


class Twice(nn.Module):
    """`bn_a` is called twice, `bn_b` once between, and a head runs after the last one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.bn_a = nn.BatchNorm2d(2)
        self.bn_b = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 1)
        self.head_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_a(self.conv(x))
        x = self.bn_b(x * 2)
        x = self.bn_a(x + 1)
        self.head_calls += 1
        return self.head(x.mean(dim=(2, 3)))


def _modules(model: Twice) -> dict[str, nn.Module]:
    return {"bn_a": model.bn_a, "bn_b": model.bn_b}


def test_call_order_is_the_order_the_forward_pass_calls_the_layers():
    model = Twice().eval()
    assert call_order(_modules(model), lambda: model(torch.randn(2, 1, 3, 3))) == [
        "bn_a", "bn_b", "bn_a",
    ]  # fmt: skip
    assert not model.bn_a._forward_pre_hooks  # the hooks are gone


def test_the_probe_yields_each_calls_input_and_stops_after_the_last():
    model = Twice().eval()
    x = torch.randn(2, 1, 3, 3)
    with torch.no_grad():
        first = model.conv(x)
        second = model.bn_a(first) * 2
        third = model.bn_b(second) + 1
    model.head_calls = 0
    probe = HookProbe(model, _modules(model), {"bn_a": 2, "bn_b": 1})
    with torch.no_grad():
        seen = list(probe.run(Call((x,))))
    assert [name for name, _ in seen] == ["bn_a", "bn_b", "bn_a"]
    for (_, got), want in zip(seen, (first, second, third), strict=True):
        torch.testing.assert_close(got, want)
    assert model.head_calls == 0  # the pass ended after the last wanted call
    probe.close()
    assert not model.bn_a._forward_hooks and not model.bn_b._forward_hooks


def test_a_probe_of_the_first_call_only_stops_early():
    model = Twice().eval()
    probe = HookProbe(model, _modules(model), {"bn_a": 1})
    with torch.no_grad():
        (only,) = list(probe.run(Call((torch.randn(2, 1, 3, 3),))))
    assert only[0] == "bn_a" and model.head_calls == 0
    probe.close()
