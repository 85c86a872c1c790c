"""Nested layouts, wrapper prefixes, several models per file, pickled modules, TorchScript.

Each case is checked against what torch itself loads: the layer names, their channel
counts and their statistics must be the same as computed from `torch.load`'s tensors.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import torch

from bnstat.analysis import analyze
from bnstat.settings import Settings
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint

STATS = ("min", "max", "mean", "std", "p01", "p50", "p99")


def torch_reference(state_dict: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per layer, the contract's statistics computed independently with torch in float64."""
    layers = {}
    for key in state_dict:
        if key.endswith(".running_mean"):
            prefix = key[: -len(".running_mean")]
            entry = {"channels": state_dict[key].numel()}
            for leaf in ("running_mean", "running_var", "weight", "bias"):
                tensor = state_dict.get(f"{prefix}.{leaf}")
                entry[leaf] = None if tensor is None else _stats(tensor.double().flatten())
            count = state_dict.get(f"{prefix}.num_batches_tracked")
            entry["num_batches_tracked"] = None if count is None else int(count)
            layers[prefix] = entry
    return layers


def _stats(values: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(values, torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64))
    return dict(
        zip(
            STATS,
            [values.min(), values.max(), values.mean(), values.std(correction=0), *q],
            strict=True,
        )
    )


def assert_matches(entry, state_dict: dict[str, torch.Tensor]) -> None:
    reference = torch_reference(state_dict)
    names = [layer.name for layer in entry.layers]
    if entry.format == "safetensors":  # the header does not keep the model's order
        assert sorted(names) == sorted(reference)
    else:
        assert names == list(reference)
    for layer in entry.layers:
        want = reference[layer.name]
        assert layer.channels == want["channels"]
        assert layer.num_batches_tracked == want["num_batches_tracked"]
        for leaf in ("running_mean", "running_var", "weight", "bias"):
            got = getattr(layer, leaf)
            if want[leaf] is None:
                assert got is None, (layer.name, leaf)
                continue
            for stat in STATS:
                assert getattr(got, stat) == pytest.approx(
                    float(want[leaf][stat]), rel=1e-9, abs=1e-12
                )


def analyse(path: Path) -> list:
    report = analyze([path], Settings(), debug=True)
    return list(report.checkpoints)


@pytest.mark.parametrize(
    "key", ["state_dict", "model", "model_state_dict", "ema", "model_ema", "net"]
)
def test_nested_state_dict_is_found_by_its_key(state_dict, write_pt, key):
    (entry,) = analyse(write_pt({key: state_dict, "epoch": 7, "best_acc": 0.93}))
    assert entry.source == key
    assert_matches(entry, state_dict)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_wrapper_prefixes_are_removed(state_dict, write_pt, prefix):
    wrapped = {prefix + k: v for k, v in state_dict.items()}
    (entry,) = analyse(write_pt(wrapped))
    assert entry.stripped_prefix == prefix
    assert_matches(entry, state_dict)


def test_averaged_model_bookkeeping_does_not_block_the_prefix(state_dict, write_pt):
    averaged = {"module." + k: v for k, v in state_dict.items()} | {"n_averaged": torch.tensor(5)}
    (entry,) = analyse(write_pt(averaged))
    assert entry.stripped_prefix == "module."
    assert_matches(entry, state_dict)


def test_prefix_is_kept_when_not_every_key_has_it(state_dict, write_pt):
    mixed = {("module." + k if k.startswith("bn2d") else k): v for k, v in state_dict.items()}
    (entry,) = analyse(write_pt(mixed))
    assert "module.bn2d" in [layer.name for layer in entry.layers]


def test_model_and_ema_are_reported_separately(state_dict, write_pt):
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in state_dict.items()}
    entries = analyse(
        write_pt({"model": state_dict, "ema": {"module." + k: v for k, v in ema.items()}})
    )
    assert [e.source for e in entries] == ["model", "ema"]
    assert_matches(entries[0], state_dict)
    assert_matches(entries[1], ema)


def test_lightning_checkpoint_with_optimizer_and_namespace(model, state_dict, write_pt):
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3, 6, 6)).sum().backward()
    optimizer.step()
    checkpoint = {
        "epoch": 3,
        "state_dict": {"model." + k: v for k, v in state_dict.items()},
        "optimizer_states": [optimizer.state_dict()],
        "hyper_parameters": argparse.Namespace(lr=0.1, layers=[1, 2]),
    }
    (entry,) = analyse(write_pt(checkpoint, name="last.ckpt"))
    assert entry.source == "state_dict"
    assert_matches(entry, state_dict)
    # A bare state dict cannot tell InstanceNorm (which never counts batches) from BatchNorm.
    assert [(f.rule, f.layer) for f in entry.findings] == [("BN012", None), ("BN003", "inorm")]
    assert "argparse.Namespace" in entry.findings[0].message


def test_pickled_module_gives_layers_kinds_and_eps(model, write_pt):
    (entry,) = analyse(write_pt(copy.deepcopy(model)))
    assert_matches(entry, model.state_dict())
    kinds = {layer.name: (layer.kind, layer.eps, layer.eps_from_file) for layer in entry.layers}
    assert kinds["bn2d"] == ("BatchNorm2d", 1e-5, True)
    assert kinds["bn3d"] == ("BatchNorm3d", 1e-3, True)
    assert kinds["inorm"][0] == "InstanceNorm2d"
    assert kinds["frozen"][0] == "FrozenBatchNorm2d"
    assert {f.rule for f in entry.findings} == {"BN012"}


def test_a_pickled_module_groups_torch_classes_and_names_the_others(model, write_pt):
    (entry,) = analyse(write_pt(copy.deepcopy(model)))
    (note,) = entry.findings
    torch_classes = {type(m) for m in model.modules() if type(m).__module__.startswith("torch.nn")}
    assert f"{len(torch_classes)} torch.nn classes (BatchNorm1d, BatchNorm2d, " in note.message
    assert "torch.nn.modules." not in note.message  # grouped, not listed one by one
    assert "zoo.FrozenBatchNorm2d, zoo.ManyNorms and " in note.message  # named in full
    assert "a whole pickled model" in note.message
    assert note.message.startswith("torch.load(weights_only=True) would refuse")


def test_torchscript_gives_layers_kinds_and_real_eps(model, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    (entry,) = analyse(path)
    assert entry.format == "torchscript"
    assert_matches(entry, dict(torch.jit.load(str(path)).state_dict()))
    kinds = {layer.name: (layer.kind, layer.eps) for layer in entry.layers}
    assert kinds["bn3d"] == ("BatchNorm3d", 1e-3)
    assert kinds["inorm"] == ("InstanceNorm2d", 1e-5)
    assert entry.findings == ()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_torchscript_gives_eps_and_momentum_from_its_graph(model, tmp_path):
    """torch.jit.trace keeps no Final constants: eps and momentum are numbers in the code."""
    traced = copy.deepcopy(model)
    traced.bn2d.momentum = 0.3
    path = tmp_path / "traced.pt"
    torch.jit.trace(traced.eval(), torch.randn(2, 3, 6, 6)).save(str(path))
    (entry,) = analyse(path)
    assert entry.format == "torchscript"
    assert_matches(entry, dict(torch.jit.load(str(path)).state_dict()))
    kinds = {layer.name: (layer.kind, layer.eps, layer.eps_from_file) for layer in entry.layers}
    assert kinds["bn2d"] == ("BatchNorm2d", 1e-5, True)
    assert kinds["bn3d"] == ("BatchNorm3d", 1e-3, True)
    assert kinds["inorm"] == ("InstanceNorm2d", 1e-5, True)
    assert kinds["bn1d"] == ("BatchNorm1d", 1e-5, True)
    with open_checkpoint(path) as raw:
        (state,) = find_state_dicts(raw)
        momentum = {name: module.momentum for name, module in state.modules.items()}
    # in eval mode a momentum=None layer is traced with its factor, 0.0
    assert momentum == {"bn2d": 0.3, "inorm": 0.1, "bn3d": 0.1, "bn1d": 0.0}
    assert entry.findings == ()


def test_legacy_nested_layout(state_dict, write_pt):
    (entry,) = analyse(write_pt({"state_dict": state_dict}, legacy=True))
    assert entry.format == "torch-legacy"
    assert_matches(entry, state_dict)


def test_safetensors_half_precision_stats_are_widened_exactly(state_dict, write_st):
    half = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    (entry,) = analyse(write_st(half))
    assert {layer.dtype for layer in entry.layers} == {"float16"}
    assert_matches(entry, half)


def test_file_without_batchnorm_reports_zero_layers_and_a_note(write_st):
    (entry,) = analyse(write_st({"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}))
    assert entry.layers == ()
    assert [(f.rule, f.severity.value) for f in entry.findings] == [("BN013", "info")]
