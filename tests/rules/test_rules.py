"""Every rule: a planted defect is reported at exactly its layer and channels, the healthy
trained model stays quiet, and thresholds cut where their documentation says.

Defects are planted in the real trained sample model (healthy.safetensors), one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from zoo import SAMPLES

from bnstat.analysis import analyze
from bnstat.rules import RULES
from bnstat.settings import Settings, with_overrides

State = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def healthy() -> State:
    return load_file(SAMPLES / "healthy.safetensors")


def findings(
    state: State, tmp_path: Path, *thresholds: str
) -> list[tuple[str, str | None, tuple[int, ...]]]:
    path = tmp_path / "planted.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    settings = with_overrides(Settings(), thresholds=thresholds)
    (entry,) = analyze([path], settings).checkpoints
    return [(f.rule, f.layer, f.channels) for f in entry.findings]


def planted(healthy: State, key: str, change: Callable[[torch.Tensor], None]) -> State:
    state = {k: v.clone() for k, v in healthy.items()}
    change(state[key])
    return state


def test_the_healthy_trained_model_is_quiet(healthy, tmp_path):
    assert findings(healthy, tmp_path) == []


def set_at(channels: list[int], value: float) -> Callable[[torch.Tensor], None]:
    def change(tensor: torch.Tensor) -> None:
        tensor[channels] = value

    return change


CASES = [
    ("BN001", "block1.bn2.running_var", set_at([2], float("inf")), (2,)),
    ("BN001", "fc_bn.bias", set_at([0, 63], float("nan")), (0, 63)),
    ("BN002", "block2.bn1.running_var", set_at([4], -0.1), (4,)),
    ("BN004", "block1.bn1.weight", set_at([3, 9], 0.0), (3, 9)),
    ("BN004", "block1.bn1.weight", set_at([5], 5e-7), (5,)),
    ("BN005", "block2.bn2.running_var", set_at([1, 7], 0.0), (1, 7)),
    ("BN006", "stem.bn.running_var", lambda t: t.__setitem__([6], t[6] * 1e4), (6,)),
    ("BN007", "fc_bn.running_var", set_at([11], 7e4), (11,)),
    ("BN007", "fc_bn.running_mean", set_at([12], -7e4), (12,)),
    ("BN009", "block2.shortcut.bn.weight", lambda t: t.__setitem__([2], t[2] * 500), (2,)),
    ("BN010", "block2.bn2.bias", lambda t: t.__setitem__([5], -5.0), (5,)),
]


@pytest.mark.parametrize(
    ("code", "key", "change", "channels"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_planted_defect_is_reported_at_its_channels(healthy, tmp_path, code, key, change, channels):
    layer = key.rsplit(".", 1)[0]
    reported = findings(planted(healthy, key, change), tmp_path)
    assert (code, layer, channels) in reported
    assert all(rule == code or (rule, code) in SIDE_EFFECTS for rule, _, _ in reported), reported


SIDE_EFFECTS = {("BN009", "BN005"), ("BN007", "BN006"), ("BN006", "BN007")}  # (also seen, planted)


def test_untrained_layer_by_values_and_by_count(healthy, tmp_path):
    reset = {k: v.clone() for k, v in healthy.items()}
    reset["stem.bn.running_mean"].zero_()
    reset["stem.bn.running_var"].fill_(1.0)
    assert ("BN003", "stem.bn", ()) in findings(reset, tmp_path)
    uncounted = {k: v.clone() for k, v in healthy.items()}
    uncounted["fc_bn.num_batches_tracked"].zero_()
    assert findings(uncounted, tmp_path) == [("BN003", "fc_bn", ())]


def test_stale_layer_and_its_threshold(healthy, tmp_path):
    stale = {k: v.clone() for k, v in healthy.items()}
    stale["block1.bn2.num_batches_tracked"].fill_(400)  # 43% of 920
    assert findings(stale, tmp_path) == [("BN008", "block1.bn2", ())]
    assert findings(stale, tmp_path, "stale-ratio=0.4") == []


@pytest.mark.parametrize(
    ("key", "value", "thresholds", "code"),
    [  # stored as float32: 1e-6 and 1e-8 are a hair below those decimals
        ("block1.bn1.weight", 1e-6, ("dead-weight-abs=1e-6", "dead-weight-rel=0"), "BN004"),
        ("block1.bn1.weight", 1e-6, ("dead-weight-abs=9e-7", "dead-weight-rel=0"), None),
        ("block1.bn1.weight", 5e-4, ("dead-weight-abs=0", "dead-weight-rel=1e-3"), "BN004"),
        ("block1.bn1.weight", 5e-4, ("dead-weight-abs=0", "dead-weight-rel=1e-4"), None),
        ("block2.bn2.running_var", 1e-8, ("collapsed-var=1e-8",), "BN005"),
        ("block2.bn2.running_var", 1e-8, ("collapsed-var=9e-9",), None),
    ],
)
def test_thresholds_cut_where_documented(healthy, tmp_path, key, value, thresholds, code):
    state = planted(healthy, key, set_at([0], value))
    codes = {rule for rule, _, _ in findings(state, tmp_path, *thresholds)} & {"BN004", "BN005"}
    assert codes == ({code} if code else set())


ON_DATA = "BN014"  # needs a model run on data: tests/recalibrate/test_diagnosis.py plants it


def test_every_rule_is_planted_here_or_in_the_samples():
    """BN011-BN013 need a pickle or an empty model: the acceptance folders hold them
    (tests/acceptance/, every rule has one of its own there)."""
    here = {case[0] for case in CASES} | {"BN003", "BN008"}
    assert {rule.code for rule in RULES} - here <= {"BN011", "BN012", "BN013", ON_DATA}
