"""The segmented sweep against the sweep by front: the same exact statistics, from one pass."""

from __future__ import annotations

import copy

import pytest
import torch
from digits_support import InMemory, consistency_violations, digits_model
from sweep_models import (
    DataDependent,
    Keyed,
    ShapeLoop,
    Siamese,
    images,
    small_resnet,
    with_reset_statistics,
)
from torch import nn

from bnstat.execution.runtimes.eager.calls import TensorCalls
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.execution.runtimes.exported.runtime import exported_model
from bnstat.execution.runtimes.torchscript.runtime import script_model
from bnstat.recalibrate.estimator import estimate

CPU = torch.device("cpu")


def running_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def assert_same_stats(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-6, atol=1e-7, msg=name)


def both_sweeps(model: nn.Module, data: torch.Tensor, key: str | None = None):  # type: ignore[no-untyped-def]
    """Statistics and estimates of the segmented sweep and of the sweep by front."""
    results = []
    for segment in (True, False):
        copy_ = copy.deepcopy(model)
        runtime = eager_model(copy_, CPU, "arch", calls=TensorCalls(key))
        result = estimate(runtime, InMemory(data, 16), segment=segment)
        results.append((copy_, result))
    return results


@pytest.mark.parametrize(
    "build",
    [
        lambda: digits_model("stats_reset.safetensors"),  # residual blocks, BatchNorm1d head
        lambda: with_reset_statistics(small_resnet()),  # in-place ReLU, +=, shortcut siblings
        lambda: with_reset_statistics(Siamese()),  # one layer called on two branches
    ],
    ids=["digits", "bottleneck-resnet", "shared-layer"],
)
def test_segmented_and_by_front_sweeps_agree(build, digits):
    model = build()
    data = digits if model.__class__.__name__ == "DigitsNet" else images()
    (seg_model, seg), (front_model, front) = both_sweeps(model, data)
    assert seg.strategy.startswith("segmented: ") and "torch.fx" in seg.strategy
    assert front.strategy.startswith("by front: ")
    assert len(seg.passes) == 2  # one sweep over the data, one verification
    assert_same_stats(running_stats(front_model), running_stats(seg_model))
    assert consistency_violations(seg_model, data) == []


def test_fronts_group_sibling_layers():
    (_, seg), (_, front) = both_sweeps(with_reset_statistics(small_resnet()), images())
    layers = len(seg.layers)
    assert layers == 1 + 3 * 3 + 2  # stem, three blocks, two projection shortcuts
    fronts = int(front.strategy.split(": ")[1].split(" passes")[0])
    assert fronts == layers - 2  # each shortcut shares a front with its block's first layer


def test_a_forward_that_takes_a_dict(tmp_path):
    data = images()
    (seg_model, seg), (front_model, _) = both_sweeps(with_reset_statistics(Keyed()), data, "image")
    assert seg.strategy.startswith("segmented")
    assert_same_stats(running_stats(front_model), running_stats(seg_model))
    assert consistency_violations(seg_model.inner, data) == []


def test_torch_export_takes_over_where_fx_cannot_trace():
    data = images()
    model = with_reset_statistics(ShapeLoop())
    result = estimate(eager_model(model, CPU, "arch"), InMemory(data, 16))
    assert "torch.export graph" in result.strategy
    assert consistency_violations(model, data) == []


def test_a_model_no_capture_handles_falls_back_and_says_so(capfd):
    data = images()
    model = with_reset_statistics(DataDependent())
    result = estimate(eager_model(model, CPU, "arch"), InMemory(data, 16))
    assert capfd.readouterr().err == ""  # the failed captures' logs stay out of the way
    assert result.strategy.startswith("by front: 2 passes")  # the two branches share a front
    assert "torch.fx cannot trace it" in result.strategy and "torch.export" in result.strategy
    assert consistency_violations(model, data) == []


def test_programs_and_scripted_models_are_segmented_too():
    data = images()
    reference = with_reset_statistics(small_resnet())
    scripted = torch.jit.script(copy.deepcopy(reference))
    traced = torch.jit.trace(copy.deepcopy(reference), data[:4])
    program = torch.export.export(
        copy.deepcopy(reference),
        (data[:4],),
        dynamic_shapes=({0: torch.export.Dim("batch", min=2)},),
    ).module()
    estimate(eager_model(reference, CPU, "arch"), InMemory(data, 16))
    for runtime, module in (
        (script_model(scripted, CPU), scripted),
        (script_model(traced, CPU), traced),
        (exported_model(program, CPU), program),
    ):
        result = estimate(runtime, InMemory(data, 16))
        assert result.strategy.startswith("segmented"), result.strategy
        assert max(result.consistency.values()) < 1e-5
        assert_same_stats(running_stats(reference), running_stats(module))


class NoGradients(DataDependent):
    """A forward that refuses gradients: no graph, not even autograd's, says the fronts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("this model runs only without gradients")
        return super().forward(x)


def test_without_any_graph_every_layer_is_its_own_front():
    data = images()
    model = with_reset_statistics(NoGradients())
    result = estimate(eager_model(model, CPU, "arch"), InMemory(data, 16))
    assert result.strategy.startswith("by front: 3 passes")
    assert consistency_violations(model, data) == []
