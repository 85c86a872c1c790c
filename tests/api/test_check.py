"""`bnstat.check` on a path, a str, a module and a state dict: the same findings, the
documented differences, and arguments checked as the command line checks its flags."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel

import bnstat
from bnstat.errors import ArgumentError, BnstatWarning, CheckpointError
from bnstat.report.inspection import Report

STATISTICS_RULES = [f"BN{n:03d}" for n in range(1, 11)]


def broken() -> nn.Sequential:
    """Ten BatchNorm layers, each broken the way one of BN001..BN010 looks for."""
    torch.manual_seed(0)
    layers = [nn.BatchNorm2d(8, eps=1e-3 if i == 9 else 1e-5) for i in range(10)]
    with torch.no_grad():
        for layer in layers:
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.normal_(0, 0.1)
            layer.num_batches_tracked.fill_(100)
        layers[0].running_mean[2] = math.nan  # BN001
        layers[1].running_var[3] = -1.0  # BN002
        layers[2].running_mean.zero_()  # BN003
        layers[2].running_var.fill_(1.0)
        layers[3].weight[[1, 5]] = 0.0  # BN004
        layers[4].running_var[6] = 1e-10  # BN005
        layers[5].running_var[0] = 1e4  # BN006
        layers[6].running_var[1] = 1e6  # BN007
        layers[7].num_batches_tracked.fill_(10)  # BN008
        layers[8].weight[4] = 500.0  # BN009
        layers[9].bias[2] = -10.0  # BN010
    return nn.Sequential(*layers)


def keyed(report: Report) -> set[tuple[str, str | None, tuple[int, ...]]]:
    return {(f.rule, f.layer, f.channels) for f in report.findings if f.rule in STATISTICS_RULES}


def test_a_path_a_str_a_module_and_a_state_dict_give_the_same_findings(tmp_path: Path):
    model = broken()
    pt, st = tmp_path / "model.pt", tmp_path / "model.safetensors"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, pt)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    reports = {
        "path": bnstat.check(pt),
        "str": bnstat.check(str(st)),
        "module": bnstat.check(model),
        "state dict": bnstat.check({"state_dict": model.state_dict(), "epoch": 3}),
        "wrapped": bnstat.check(AveragedModel(model)),
    }
    expected = keyed(reports["path"])
    assert {rule for rule, _, _ in expected} == set(STATISTICS_RULES)
    assert {name: keyed(report) for name, report in reports.items()} == dict.fromkeys(
        reports, expected
    )
    formats = [report.checkpoints[0].format for report in reports.values()]
    assert formats == ["torch-zip", "safetensors", "module", "state-dict", "module"]


def test_a_module_gives_each_layers_real_eps_and_class_where_a_file_assumes():
    model = broken()
    from_module = bnstat.check(model).checkpoints[0].layers[9]
    from_state = bnstat.check(model.state_dict(), eps=1e-4).checkpoints[0].layers[9]
    assert (from_module.eps, from_module.eps_from_file, from_module.kind) == (
        1e-3,
        True,
        "BatchNorm2d",
    )
    assert (from_state.eps, from_state.eps_from_file, from_state.kind) == (1e-4, False, None)


def test_a_modules_real_eps_can_change_what_its_state_dict_shows():
    """The documented difference: a folded scale w / sqrt(var + eps) of a collapsed channel
    is an outlier with the assumed 1e-5, not with the module's own 1e-3."""
    layer = nn.BatchNorm2d(8, eps=1e-3)
    with torch.no_grad():
        layer.running_var[6] = 1e-10
    rules = [{f.rule for f in bnstat.check(x).findings} for x in (layer, layer.state_dict())]
    assert rules == [{"BN005"}, {"BN005", "BN009"}]


def test_select_ignore_fail_on_and_thresholds_act_as_the_flags_do():
    model = broken()
    assert {f.rule for f in bnstat.check(model, select="BN00").findings} <= set(
        STATISTICS_RULES[:9]
    )
    assert {f.rule for f in bnstat.check(model, select=["BN004", "BN010"]).findings} == {
        "BN004",
        "BN010",
    }
    assert "BN004" not in {f.rule for f in bnstat.check(model, ignore="BN004,BN005").findings}
    assert bnstat.check(model, select="BN010").verdict.value == "passed"  # info < error
    assert bnstat.check(model, select="BN010", fail_on="info").verdict.value == "failed"
    # one threshold changed, the others kept: BN009 quiet, BN004 as before
    relaxed = bnstat.check(model, thresholds={"fold_ratio": 1e6})
    assert "BN009" not in {f.rule for f in relaxed.findings}
    assert "BN004" in {f.rule for f in relaxed.findings}


def test_without_config_the_library_reads_no_settings_file(tmp_path: Path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.bnstat]\nignore = ["BN004"]\n')
    monkeypatch.chdir(tmp_path)
    assert "BN004" in {f.rule for f in bnstat.check(broken()).findings}
    configured = bnstat.check(broken(), config=tmp_path / "pyproject.toml")
    assert "BN004" not in {f.rule for f in configured.findings}


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"target": 3}, TypeError, "target must be a path"),
        ({"target": [Path("a.pt"), 3]}, TypeError, "target must be a path"),
        ({"target": []}, ArgumentError, "target is an empty list"),
        ({"select": "BN99"}, ArgumentError, "select has an unknown rule code 'BN99'"),
        ({"ignore": ["BN004", 5]}, TypeError, "ignore must be a rule code"),
        ({"fail_on": "loud"}, ArgumentError, "fail_on must be error, warning, info or never"),
        ({"thresholds": {"no-such": 1}}, ArgumentError, "thresholds has an unknown name"),
        ({"thresholds": {"fold-ratio": -1}}, ArgumentError, r"thresholds\['fold-ratio'\] must"),
        ({"thresholds": {"fold-ratio": "big"}}, TypeError, r"\['fold-ratio'\] must be a number"),
        ({"thresholds": [("fold-ratio", 1)]}, TypeError, "thresholds must be a mapping"),
        ({"eps": 2.0}, ArgumentError, "eps must be between 0 and 1"),
        ({"config": "missing.toml"}, ArgumentError, "config 'missing.toml' is not a file"),
    ],
)
def test_wrong_arguments_raise_the_documented_exceptions(arguments, error, message):
    call: dict[str, Any] = {"target": broken(), **arguments}
    with pytest.raises(error, match=message):
        bnstat.check(**call)
    assert issubclass(ArgumentError, ValueError)


def test_one_unreadable_checkpoint_raises_among_several_it_is_reported(tmp_path: Path):
    bad, good = tmp_path / "bad.pt", tmp_path / "good.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    torch.save(broken().state_dict(), good)
    with pytest.raises(CheckpointError):
        bnstat.check(bad)
    with pytest.warns(BnstatWarning, match="bad.pt"):
        report = bnstat.check([bad, good])
    assert report.verdict.value == "unreadable"
    assert [entry.error is None for entry in report.checkpoints] == [False, True]
    with pytest.raises(ArgumentError, match="holds no checkpoint"):
        bnstat.check(tmp_path / "*.nothing")


def test_check_prints_nothing_and_warns_nothing_on_a_healthy_model(capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bnstat.check(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    assert capfd.readouterr() == ("", "")
