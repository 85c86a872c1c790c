"""The estimators against an independent measurement: eval-mode input statistics in float64."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from digits_support import InMemory, consistency_violations, digits_model, eval_input_moments
from torch import nn

from bnstat.errors import ModelError
from bnstat.execution.model import Model
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.execution.runtimes.torchscript.runtime import script_model
from bnstat.recalibrate.estimator import Method, estimate

CPU = torch.device("cpu")


def eager(model: nn.Module) -> Model:
    return eager_model(model, CPU, "arch")


def test_exact_method_is_eval_consistent_and_train_average_is_not(digits):
    exact, average = (
        digits_model("stats_reset.safetensors"),
        digits_model("stats_reset.safetensors"),
    )
    estimate(eager(exact), InMemory(digits, 32), Method.EXACT)
    estimate(eager(average), InMemory(digits, 32), Method.TRAIN_AVERAGE)
    assert consistency_violations(exact, digits) == []
    assert len(consistency_violations(average, digits, atol=1e-3)) >= 3


@pytest.mark.parametrize("method", list(Method))
def test_reported_consistency_agrees_with_the_independent_check(digits, method):
    model = digits_model("stats_reset.safetensors")
    result = estimate(eager(model), InMemory(digits, 16), method)
    worst = max(result.consistency.values())
    assert (worst < 1e-5) == (method is Method.EXACT)
    assert (consistency_violations(model, digits) == []) == (method is Method.EXACT)


def test_exact_method_does_not_depend_on_the_batch_size(digits):
    small, large = (
        digits_model("stats_inverted.safetensors"),
        digits_model("stats_inverted.safetensors"),
    )
    estimate(eager(small), InMemory(digits, 2), Method.EXACT, verify=False)
    estimate(eager(large), InMemory(digits, 256), Method.EXACT, verify=False)
    for (name, a), b in zip(small.named_buffers(), large.buffers(), strict=True):
        if "running" in name:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_train_average_depends_on_the_batch_size(digits):
    small, large = digits_model(), digits_model()
    estimate(eager(small), InMemory(digits, 2), Method.TRAIN_AVERAGE, verify=False)
    estimate(eager(large), InMemory(digits, 256), Method.TRAIN_AVERAGE, verify=False)
    assert not torch.allclose(small.fc_bn.running_var, large.fc_bn.running_var, rtol=1e-2)


def test_train_average_is_pytorchs_cumulative_average(digits):
    """The same numbers as BatchNorm's own momentum=None running average in training mode."""
    ours, reference = digits_model("stats_reset.safetensors"), digits_model()
    estimate(eager(ours), InMemory(digits, 32), Method.TRAIN_AVERAGE, verify=False)
    for module in reference.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
            module.train()
    with torch.no_grad():
        for batch in digits.split(32):
            reference(batch)
    for name, value in reference.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_gives_the_same_statistics_as_eager(digits, kind):
    model = digits_model("stats_reset.safetensors")
    compiled = (
        torch.jit.script(copy.deepcopy(model))
        if kind == "script"
        else torch.jit.trace(copy.deepcopy(model), digits[:4])
    )
    estimate(eager(model), InMemory(digits, 32))
    result = estimate(script_model(compiled, CPU), InMemory(digits, 32))
    assert result.strategy.startswith("segmented")
    order = ["stem.bn", "block1.bn1", "block1.bn2", "block2.bn1", "block2.bn2"]
    assert [layer.name for layer in result.layers] == [*order, "block2.shortcut.bn", "fc_bn"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(
            compiled.state_dict()[name], value, rtol=1e-6, atol=1e-8, msg=name
        )


def test_traced_module_refuses_the_train_mode_average(digits):
    traced = torch.jit.trace(digits_model(), digits[:4])
    with pytest.raises(ModelError, match="traced"):
        estimate(script_model(traced, CPU), InMemory(digits, 32), Method.TRAIN_AVERAGE)


def test_layers_are_swept_in_execution_order_not_registration_order():
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.BatchNorm1d(4)
            self.mix = nn.Linear(4, 4)
            self.early = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.late(self.mix(self.early(x)))

    torch.manual_seed(0)
    data = torch.randn(64, 4) * 3 + 1
    for runtime in (eager(Reversed()), script_model(torch.jit.script(Reversed()), CPU)):
        result = estimate(runtime, InMemory(data, 8))
        assert [layer.name for layer in result.layers] == ["early", "late"]
        assert max(result.consistency.values()) < 1e-6


def test_modes_are_restored(digits):
    model = digits_model("stats_reset.safetensors").train()
    model.fc_bn.momentum = 0.3
    estimate(eager(model), InMemory(digits, 32), Method.TRAIN_AVERAGE)
    assert all(module.training for module in model.modules())
    assert model.fc_bn.momentum == 0.3


class Failing(InMemory):
    """Data that breaks on the third pass (the first batch, the first sweep, the second)."""

    def __init__(self, values: torch.Tensor, batch_size: int) -> None:
        super().__init__(values, batch_size)
        self.calls = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.calls += 1
        if self.calls == 3:
            raise OSError("disk went away")
        return super().__iter__()


def test_statistics_are_restored_when_the_run_fails(digits):
    model = digits_model("stats_reset.safetensors")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(OSError):
        estimate(eager(model), Failing(digits, 32), sweeps=2)  # after every layer was set
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not model.training


def test_non_finite_activations_name_the_layer(digits):
    model = digits_model()
    with torch.no_grad():
        model.block1.conv2.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ModelError, match=r"non-finite activations reach layer block1\.bn2"):
        estimate(eager(model), InMemory(digits, 32))


def test_unreached_layers_are_left_alone(digits):
    model = digits_model()
    model.spare = nn.BatchNorm2d(5)
    result = estimate(eager(model), InMemory(digits, 64))
    assert result.unreached == ("spare",)
    assert torch.equal(model.spare.running_var, torch.ones(5))


def test_layer_called_on_its_own_output_falls_back_and_is_refined_by_more_passes():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(3)
            self.mix = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.mix(self.bn(x)))

    torch.manual_seed(0)
    data = torch.randn(128, 3) * 2 + 3
    model = Shared()
    result = estimate(eager(model), InMemory(data, 16), sweeps=4)
    assert result.strategy.startswith("by front") and "depend on its own output" in result.strategy
    changes = result.sweep_changes
    assert len(changes) == 3 and changes[-1] < changes[0]
    mean, var = eval_input_moments(model, data)["bn"]
    assert torch.isfinite(mean).all() and torch.isfinite(var).all()


def test_the_eps_of_a_traced_module_comes_from_its_graph(digits):
    model = digits_model()
    model.block1.bn2.eps = 1e-3
    runtime = script_model(torch.jit.trace(model, digits[:4]), CPU)
    eps = {layer.name: layer.eps for layer in runtime.runner.layers}
    assert eps["block1.bn2"] == pytest.approx(1e-3) and eps["stem.bn"] == pytest.approx(1e-5)


def test_a_scripted_module_gets_the_same_train_average_through_its_probe(digits):
    eager_model = digits_model("stats_reset.safetensors")
    scripted = torch.jit.script(copy.deepcopy(eager_model))
    estimate(eager(eager_model), InMemory(digits, 32), Method.TRAIN_AVERAGE, verify=False)
    estimate(script_model(scripted, CPU), InMemory(digits, 32), Method.TRAIN_AVERAGE, verify=False)
    for name, value in eager_model.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(scripted.state_dict()[name], value, rtol=1e-5, atol=1e-7)
