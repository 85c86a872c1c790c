"""Counts and ranges read as a person writes them: singular for one, a range only when
its two ends differ. Checked on the helpers and on real messages of planted defects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from zoo import SAMPLES

from bnstat.analysis import analyze
from bnstat.settings import Settings
from bnstat.wording import bound, counted, plural, span


def test_the_helpers():
    assert [counted(n, "layer") for n in (0, 1, 2)] == ["0 layers", "1 layer", "2 layers"]
    assert (
        counted(1, "batch", "batches") == "1 batch" and plural("batch", 3, "batches") == "batches"
    )
    assert span("0.5", "0.5") == "0.5" and span("0.5", "2") == "0.5..2"
    assert bound("0", "0", "at most") == "0" and bound("3", "1", "at most") == "at most 3"


def message(tmp_path: Path, rule: str, key: str, channels: list[int], value: float) -> str:
    """The message of `rule` after setting `key[channels]` of the healthy model to `value`."""
    state = load_file(SAMPLES / "healthy.safetensors")
    state[key][channels] = value
    path = tmp_path / "planted.safetensors"
    save_file(state, path)
    (entry,) = analyze([path], Settings()).checkpoints
    (found,) = [f.message for f in entry.findings if f.rule == rule]
    return found


@pytest.mark.parametrize(
    ("rule", "key", "channels", "value", "one", "many"),
    [
        ("BN004", "block1.bn1.weight", [3], 0.0, "1 dead channel [3] (|weight| 0,", "outputs its"),
        ("BN004", "block1.bn1.weight", [3, 9], 0.0, "2 dead channels [3, 9] (|weight| 0,",
         "output their"),
        ("BN001", "fc_bn.bias", [0], float("nan"), "1 channel holds NaN", ""),
        ("BN001", "fc_bn.bias", [0, 5], float("nan"), "2 channels hold NaN", ""),
        ("BN005", "block2.bn2.running_var", [1], 0.0, "collapsed to 0 in 1 channel [1]",
         "of this input"),
        ("BN005", "block2.bn2.running_var", [1, 7], 0.0, "collapsed to 0 in 2 channels [1, 7]",
         "of these inputs"),
        ("BN010", "block2.bn2.bias", [5], -5.0, "1 channel [5] is shifted", "it passes"),
        ("BN010", "block2.bn2.bias", [5, 6], -50.0, "2 channels [5, 6] are shifted", "they pass"),
    ],
)  # fmt: skip
def test_singular_and_plural_in_rule_messages(tmp_path, rule, key, channels, value, one, many):
    text = message(tmp_path, rule, key, channels, value)
    assert one in text and many in text, text


def test_at_most_and_ranges_only_between_two_different_values(tmp_path):
    state = load_file(SAMPLES / "healthy.safetensors")
    state["block1.bn1.weight"][[3, 9]] = torch.tensor([0.0, 2e-7])
    state["stem.bn.running_var"][6] = state["stem.bn.running_var"][6] * 1e4
    path = tmp_path / "planted.safetensors"
    save_file(state, path)
    messages = {f.rule: f.message for f in analyze([path], Settings()).checkpoints[0].findings}
    assert "(|weight| at most 2e-07," in messages["BN004"]
    assert ".." not in messages["BN006"], messages["BN006"]  # one outlying channel: one value


def test_one_unreadable_input_and_one_baseline_finding(cli, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    result = cli("check", SAMPLES / "healthy.pt", empty)
    assert "exit 2: 1 input could not be read\n" in result.stdout
    dead = shutil.copy(SAMPLES / "bn004_dead_channel.pt", tmp_path / "dead.pt")
    baseline = tmp_path / "baseline.json"
    assert (
        "baseline of 1 finding written" in cli("check", dead, "--write-baseline", baseline).stderr
    )
    assert (
        "baseline: 1 known finding not reported"
        in cli("check", dead, "--baseline", baseline).stderr
    )


def test_a_pickle_calling_one_function_runs_it(cli):
    result = cli("check", SAMPLES / "pickle_payload.pt")
    assert "would run it (bnstat did not)" in result.stdout


def test_one_channel_layer_counted_once_in_the_html(tmp_path):
    from rendering import render
    from safetensors.numpy import save_file as save_numpy

    from bnstat.formats import InspectFormat

    layer = {"bn.running_mean": np.zeros(1), "bn.running_var": np.ones(1) * 2,
             "bn.num_batches_tracked": np.array(1)}  # fmt: skip
    path = tmp_path / "one.safetensors"
    save_numpy(layer, str(path))
    page = render(analyze([path], Settings()), InspectFormat.HTML)
    assert "1 channel · float64 · 1 batch</span>" in page and "1 layer</span>" in page
