"""`recalibrate.model_source`: which model of a file, on which device, and the refusals
that come before any code runs."""

from __future__ import annotations

import os

import pytest
import torch
from zoo import SAMPLES

from bnstat.errors import ArgumentError, ModelError, UnsafeCheckpointError, UsageError
from bnstat.execution.model_options import (
    ModelSpec,
    choose_state,
    refuse_arch,
    refuse_code,
    resolve_device,
    run_loader,
    torch_tensor,
)
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint


def test_the_model_of_a_file_with_several_is_chosen_by_name():
    with open_checkpoint(SAMPLES / "ema_stale.pt") as raw:
        assert choose_state(raw, "ema").name == "ema"
        with pytest.raises(ModelError, match="several models \\('model', 'ema'\\)"):
            choose_state(raw, None)
        with pytest.raises(ArgumentError, match=r"^source 'emma': no such model"):
            choose_state(raw, "emma")
    with open_checkpoint(SAMPLES / "healthy.pt") as raw:
        assert choose_state(raw, None).name is None
    without = open_checkpoint(SAMPLES / "no_batchnorm.safetensors")
    with without as raw, pytest.raises(ModelError, match="no BatchNorm layers"):
        choose_state(raw, None)


def test_code_in_the_pickle_is_refused_unless_trusted():
    with open_checkpoint(SAMPLES / "pickle_payload.pt") as raw:
        with pytest.raises(UnsafeCheckpointError, match=r"posix\.getcwd"):
            refuse_code(raw, ModelSpec())
        refuse_code(raw, ModelSpec(unsafe_load=True))
    with open_checkpoint(SAMPLES / "lightning.ckpt") as raw:  # a Namespace runs no code
        refuse_code(raw, ModelSpec())


def test_arch_is_refused_for_a_model_that_runs_as_it_is():
    refuse_arch(ModelSpec(), "a TorchScript archive")
    with pytest.raises(UsageError, match="--arch is for state dicts"):
        refuse_arch(ModelSpec(arch="m.py:f"), "a TorchScript archive")


def test_a_failing_loader_is_a_model_error_naming_what_failed():
    assert run_loader(lambda: 3, "build it") == 3
    with pytest.raises(ModelError, match="cannot build it: KeyError: 'x'"):
        run_loader(lambda: {}["x"], "build it")


def test_lazy_tensors_become_torchs_own(state_dict, write_st):
    half = {"a": state_dict["bn2d.running_var"].to(torch.bfloat16), "b": torch.arange(3)}
    with open_checkpoint(write_st(half)) as raw:
        (state,) = find_state_dicts(raw)
        for key, tensor in half.items():
            got = torch_tensor(state.tensors[key])
            assert got.dtype == tensor.dtype and torch.equal(got, tensor)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.backends.mps.is_available():
        assert resolve_device("auto").type == expected
    for name, message in [("tpu", "expected auto, cpu"), ("gpu:0", "expected auto, cpu")]:
        with pytest.raises(UsageError, match=message):
            resolve_device(name)
    if not torch.cuda.is_available() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda:0")
