"""`bnstat.recalibrate` on modules in memory and DataLoaders, scored against forward hooks
on the eager model called the same way (`reference.violations`)."""

from __future__ import annotations

import copy
import signal
from typing import Any

import pytest
import torch
from digits_support import digits_model
from reference import first, violations
from sweep_models import (
    DataDependent,
    Masked,
    dict_batches,
    keyword_call,
    small_resnet,
    with_reset_statistics,
)
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, TensorDataset

import bnstat
from bnstat.errors import ArgumentError, DataError


def images(count: int = 97, size: int = 12, channels: int = 3) -> TensorDataset:
    """97 samples: batches of 16 end with a batch of one sample."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(count, channels, size, size, generator=generator) * 2 + 0.5
    return TensorDataset(pixels, torch.randint(0, 10, (count,), generator=generator))


def shuffled(dataset: TensorDataset, batch_size: int = 16) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True)


def in_order(dataset: TensorDataset) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=32)


def test_a_shuffling_loader_of_tuples_ending_with_one_sample_gives_exact_statistics():
    model, dataset = with_reset_statistics(small_resnet()), images()
    result = bnstat.recalibrate(model, shuffled(dataset))
    assert result.strategy.startswith("segmented")
    assert (result.samples, result.batches, result.consistency < 1e-5) == (97, 7, True)
    assert violations(model, in_order(dataset), first) == []


def test_dicts_through_a_call_fn_give_exact_statistics():
    torch.manual_seed(0)
    model, batches = Masked().eval(), dict_batches(size=7)
    result = bnstat.recalibrate(model, batches, call_fn=keyword_call)
    assert result.strategy.startswith("segmented") and result.samples == 35
    assert violations(model, batches, keyword_call) == []


def test_the_train_average_folds_a_last_single_sample_into_the_batch_before():
    model, dataset = digits_model(), images(channels=1, size=8)  # its head is a BatchNorm1d
    result = bnstat.recalibrate(model, shuffled(dataset), method="train-average")
    assert (result.samples, result.batches) == (97, 6)
    assert all(torch.isfinite(b).all() for b in model.buffers())


def test_the_model_keeps_its_modes_parameters_and_dtype():
    model = with_reset_statistics(small_resnet()).double().train()
    model.layers.eval()  # a mix of modes, as a fine-tuning script leaves it
    modes = {name: module.training for name, module in model.named_modules()}
    parameters = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    dataset = TensorDataset(images()[:][0].double())
    bnstat.recalibrate(model, DataLoader(dataset, batch_size=16))
    assert {name: module.training for name, module in model.named_modules()} == modes
    for name, (parameter, before) in parameters.items():
        assert model.get_parameter(name) is parameter and torch.equal(parameter, before)
        assert parameter.requires_grad and parameter.grad is None
    assert {b.dtype for n, b in model.named_buffers() if "running" in n} == {torch.float64}
    assert violations(model, DataLoader(dataset, batch_size=32), first) == []


def test_an_averaged_model_takes_the_fast_path_and_gets_the_plain_models_statistics():
    plain, dataset = with_reset_statistics(small_resnet()), images()
    averaged = AveragedModel(copy.deepcopy(plain))
    plain_run = bnstat.recalibrate(plain, in_order(dataset))
    averaged_run = bnstat.recalibrate(averaged, in_order(dataset))
    assert averaged_run.strategy == plain_run.strategy  # segmented, one pass: no slower
    assert averaged_run.strategy.startswith("segmented") and averaged_run.source == "module"
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(averaged.module.state_dict()[name], value, msg=name)


def test_a_compiled_module_is_unwrapped_without_being_compiled():
    def refuse(graph: Any, inputs: Any) -> Any:
        raise AssertionError("bnstat called the compiled module")

    model, dataset = with_reset_statistics(small_resnet()), images()
    compiled = torch.compile(model, backend=refuse)
    assert type(compiled).__name__ == "OptimizedModule"
    result = bnstat.recalibrate(compiled, in_order(dataset))  # type: ignore[arg-type]
    assert result.strategy.startswith("segmented") and result.source == "_orig_mod"
    assert violations(model, in_order(dataset), first) == []


def test_a_shuffling_loader_is_never_mixed_with_another_iteration():
    unsegmented = with_reset_statistics(DataDependent())  # one pass per front: it rereads
    before = copy.deepcopy(unsegmented.state_dict())
    with pytest.raises(DataError, match="changed between two passes"):
        bnstat.recalibrate(unsegmented, shuffled(images()), cache_mb=0)
    for name, value in before.items():  # a failed run leaves the statistics as they were
        assert torch.equal(unsegmented.state_dict()[name], value), name
    model, dataset = with_reset_statistics(small_resnet()), images()
    result = bnstat.recalibrate(model, shuffled(dataset), cache_mb=0)
    assert result.strategy.startswith("segmented")  # one pass over the data: nothing to mix,
    assert result.consistency < 1e-5  # and the check runs on the batches the sweep kept
    assert violations(model, in_order(dataset), first) == []


def test_a_call_prints_nothing_and_installs_no_signal_handler(capfd):
    handlers = []

    def call(model: nn.Module, batch: Any) -> Any:
        handlers.append(signal.getsignal(signal.SIGTERM))
        return model(batch[0])

    before = signal.getsignal(signal.SIGTERM)
    bnstat.recalibrate(with_reset_statistics(small_resnet()), in_order(images()), call_fn=call)
    assert handlers and set(handlers) == {before}
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"model": "resnet.pt"}, TypeError, "model must be a torch.nn.Module"),
        ({"data": 3}, TypeError, "data must be an iterable of batches"),
        ({"data": "calibration/"}, TypeError, "data must be an iterable of batches"),
        ({"method": "fast"}, ArgumentError, "method must be exact or train-average"),
        ({"method": 1}, TypeError, "method must be"),
        ({"device": "tpu"}, ArgumentError, "device 'tpu': expected auto, cpu"),
        ({"device": 0}, TypeError, "device must be a str, a torch.device or None"),
        ({"call_fn": "forward"}, TypeError, "call_fn must be a function"),
        ({"input_key": "x", "call_fn": first}, ArgumentError, "input_key cannot be given"),
        ({"max_samples": 0}, ArgumentError, "max_samples must be at least 1"),
        ({"max_samples": 2.5}, TypeError, "max_samples must be an int"),
        ({"cache_mb": -1}, ArgumentError, "cache_mb must be at least 0"),
        ({"verify": "yes"}, TypeError, "verify must be a bool"),
        ({"progress": 1}, TypeError, "progress must be a bool"),
    ],
)
def test_wrong_arguments_raise_the_documented_exceptions(arguments, error, message):
    call: dict[str, Any] = {"model": small_resnet(), "data": in_order(images()), **arguments}
    with pytest.raises(error, match=message):
        bnstat.recalibrate(**call)


def test_a_torchscript_module_is_refused_with_a_way_out():
    scripted = torch.jit.script(small_resnet())
    with pytest.raises(TypeError, match="TorchScript"):
        bnstat.recalibrate(scripted, in_order(images()))
