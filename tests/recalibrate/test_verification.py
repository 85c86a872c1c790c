"""Verification re-measures a sample of batches through the whole model: it agrees with a
correct sweep to float rounding and catches a sweep that cached the wrong values."""

from __future__ import annotations

import copy

import pytest
import torch
from digits_support import InMemory
from sweep_models import images, small_resnet, with_reset_statistics

from bnstat.execution.cache import ActivationCache
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.recalibrate.estimator import estimate
from bnstat.recalibrate.verification import EVERY

CPU = torch.device("cpu")


def test_a_correct_sweep_agrees_with_the_whole_model_on_the_kept_batches():
    model = with_reset_statistics(small_resnet())
    result = estimate(eager_model(model, CPU, "arch"), InMemory(images(96), 4))
    verify = result.passes[-1]
    assert verify.label == "verify" and verify.batches == len(range(0, 24, EVERY)) == 2
    assert max(result.consistency.values()) < 1e-6


def test_a_sweep_that_reads_another_batch_from_its_cache_is_caught(monkeypatch):
    """A cache handing batch i-1's value for batch i (a misaligned index): the statistics
    come out plausible but wrong, and only the check through the whole model sees it."""
    model = with_reset_statistics(small_resnet())
    right = copy.deepcopy(model)
    estimate(eager_model(right, CPU, "arch"), InMemory(images(96), 4), verify=False)
    shifted = ActivationCache.get
    monkeypatch.setattr(ActivationCache, "get", lambda self, v, b: shifted(self, v, max(b - 1, 0)))
    result = estimate(eager_model(model, CPU, "arch"), InMemory(images(96), 4))
    assert max(result.consistency.values()) > 1e-3
    wrong = [name for name, value in model.state_dict().items() if "running_var" in name
             and not torch.allclose(value, right.state_dict()[name], rtol=1e-4)]  # fmt: skip
    assert wrong  # the sweep's own statistics were off, and nothing else said so


@pytest.mark.parametrize("batches", [1, 5])
def test_short_data_still_checks_one_batch(batches):
    model = with_reset_statistics(small_resnet())
    result = estimate(eager_model(model, CPU, "arch"), InMemory(images(4 * batches), 4))
    assert result.passes[-1].batches == 1 and max(result.consistency.values()) < 1e-6
