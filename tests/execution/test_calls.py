"""Batches as the caller has them, called the caller's way, through every pass of the sweep;
scored against hooks on the eager model called the same way (`reference`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from reference import first, violations
from sweep_models import Masked, PerChannelLoop, dict_batches, keyword_call
from torch import nn

from bnstat.errors import DataError
from bnstat.execution.runtimes.eager.calls import BatchCalls
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.recalibrate.estimator import estimate

CPU = torch.device("cpu")


def recalibrated(model: nn.Module, batches: list[Any], calls: BatchCalls) -> str:
    result = estimate(eager_model(model, CPU, "module", calls=calls), batches)
    return result.strategy


@pytest.mark.parametrize(("build", "how"), [(Masked, "torch.fx"), (PerChannelLoop, "torch.export")])
def test_a_call_fns_call_is_recorded_and_the_graph_runs_on_it(build, how):
    torch.manual_seed(0)
    model, batches = build().eval(), dict_batches()
    strategy = recalibrated(model, batches, BatchCalls(call_fn=keyword_call))
    assert strategy.startswith("segmented") and how in strategy
    assert violations(model, batches, keyword_call) == []


def test_a_call_fn_that_calls_the_model_twice_runs_as_it_is():
    torch.manual_seed(0)
    model, batches = Masked().eval(), dict_batches()

    def both_views(model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        return model(batch["image"]), model(batch["image"].flip(-2), mask=batch["mask"])

    strategy = recalibrated(model, batches, BatchCalls(call_fn=both_views))
    assert strategy.startswith("by front") and "more than once" in strategy
    assert violations(model, batches, both_views) == []


def test_tuples_are_called_with_their_first_element_and_mappings_by_key():
    torch.manual_seed(0)
    model, batches = Masked().eval(), dict_batches()
    tuples = [(batch["image"], batch["label"]) for batch in batches]
    by_tuple, by_key = copy.deepcopy(model), copy.deepcopy(model)
    assert recalibrated(by_tuple, tuples, BatchCalls()).startswith("segmented")
    assert violations(by_tuple, tuples, first) == []
    recalibrated(by_key, batches, BatchCalls(input_key="image"))
    for name, value in by_tuple.state_dict().items():
        torch.testing.assert_close(by_key.state_dict()[name], value, msg=name)


def test_a_mapping_without_input_key_or_call_fn_is_refused_with_both_ways_out():
    with pytest.raises(DataError, match=r"input_key=.*call_fn="):
        recalibrated(Masked().eval(), dict_batches(), BatchCalls())
    with pytest.raises(DataError, match="'pixels' is not a key"):
        recalibrated(Masked().eval(), dict_batches(), BatchCalls(input_key="pixels"))
