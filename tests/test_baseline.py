"""Baselines: accepted findings stay quiet, new ones fail the run."""

from __future__ import annotations

import json
import shutil

import torch
from zoo import SAMPLES

BROKEN = sorted(p.name for p in SAMPLES.glob("bn0*"))


def test_baseline_accepts_the_known_and_catches_the_new(cli, tmp_path, monkeypatch):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for name in BROKEN:
        shutil.copy(SAMPLES / name, zoo / name)
    baseline = tmp_path / "baseline.json"
    written = cli("check", zoo, "--write-baseline", baseline, "--fail-on", "info")
    assert written.exit_code == 0
    assert cli("check", zoo, "--fail-on", "info").exit_code == 1
    assert cli("check", zoo, "--baseline", baseline, "--fail-on", "info").exit_code == 0
    monkeypatch.chdir(zoo)  # keys are relative to the baseline, not to the working directory
    assert cli("check", ".", "--baseline", baseline, "--fail-on", "info").exit_code == 0
    state = torch.load(zoo / "bn004_dead_channel.pt", weights_only=True)
    state["block2.bn1.running_var"][0] = float("nan")  # a new defect in another layer
    torch.save(state, zoo / "bn004_dead_channel.pt")
    result = cli("check", ".", "--baseline", baseline, "--format", "json")
    assert result.exit_code == 1
    findings = [
        (f["rule"], f["layer"])
        for c in json.loads(result.stdout)["checkpoints"]
        for f in c["findings"]
    ]
    assert findings == [("BN001", "block2.bn1")]


def test_baseline_file_is_keyed_by_layer_and_rule_not_message(cli, tmp_path):
    baseline = tmp_path / "baseline.json"
    cli("check", SAMPLES / "bn004_dead_channel.pt", "--write-baseline", baseline)
    (entry,) = json.loads(baseline.read_text())["findings"]
    assert entry["path"].endswith("sample_checkpoints/bn004_dead_channel.pt")
    assert (entry["source"], entry["layer"], entry["rule"]) == (None, "block1.bn1", "BN004")


def test_bad_baselines_are_clean_errors(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = cli("check", SAMPLES / "healthy.pt", "--baseline", bad)
    assert result.exit_code == 2 and "not a bnstat baseline" in result.stderr
    assert (
        cli("check", SAMPLES / "healthy.pt", "--baseline", tmp_path / "missing.json").exit_code == 2
    )
