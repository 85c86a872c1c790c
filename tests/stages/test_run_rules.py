"""`stages.run_rules`: which rules run, which findings are kept, and in what order."""

from __future__ import annotations

import numpy as np
from test_summarise import layer_refs

from bnstat.data_fit import ChannelFit
from bnstat.readers.base import CheckpointFormat
from bnstat.report.severity import Severity
from bnstat.rules.base import DataFacts, RuleInput
from bnstat.settings import Settings, with_overrides
from bnstat.stages.read_layers import read_layers
from bnstat.stages.run_rules import run_rules


def _input(order: tuple[int, ...] | None = None) -> RuleInput:
    """Three layers: `a` with a negative variance and a dead channel, `b` clean, `c` with
    a NaN mean; a refused global for the checkpoint-level rule."""
    values = {
        "a": {"mean": np.zeros(4), "var": np.array([1, -1, 1, 1.0]),
              "weight": np.array([1, 1, 0, 1.0]), "bias": np.zeros(4)},
        "b": {"mean": np.full(4, 0.1), "var": np.full(4, 2.0),
              "weight": np.ones(4), "bias": np.ones(4)},
        "c": {"mean": np.array([np.nan, 0, 0, 0]), "var": np.ones(4)},
    }  # fmt: skip
    batch = read_layers([layer_refs(name, layer) for name, layer in values.items()], 1e-5)
    fits = {i: ChannelFit(np.zeros(4), np.ones(4), np.zeros(4, bool)) for i in order or ()}
    data = None if order is None else DataFacts(fits, order, "bnstat recalibrate ...")
    return RuleInput(batch, Settings().thresholds, ("argparse.Namespace",),
                     CheckpointFormat.TORCH_ZIP, data)  # fmt: skip


def _found(settings: Settings, order: tuple[int, ...] | None = None) -> list[tuple[str, str]]:
    with np.errstate(all="ignore"):
        return [(f.rule, f.layer or "-") for f in run_rules(_input(order), settings)]


def test_findings_by_layer_then_code_checkpoint_first():
    assert _found(Settings()) == [
        ("BN012", "-"), ("BN002", "a"), ("BN004", "a"), ("BN001", "c"),
    ]  # fmt: skip


def test_a_data_pass_orders_the_layers_as_they_run():
    assert _found(Settings(), order=(2, 1, 0)) == [
        ("BN012", "-"), ("BN001", "c"), ("BN002", "a"), ("BN004", "a"),
    ]  # fmt: skip


def test_selection_ignores_and_shown_layers():
    assert _found(with_overrides(Settings(), select=["BN00"])) == [
        ("BN002", "a"), ("BN004", "a"), ("BN001", "c"),
    ]  # fmt: skip
    assert _found(with_overrides(Settings(), ignore=["BN002,BN012"])) == [
        ("BN004", "a"), ("BN001", "c"),
    ]  # fmt: skip
    ignores = Settings(per_layer_ignores=(("a", ("BN004",)),))
    assert ("BN004", "a") not in _found(ignores) and ("BN002", "a") in _found(ignores)
    assert _found(with_overrides(Settings(), layers=["c"])) == [("BN012", "-"), ("BN001", "c")]


def test_a_finding_carries_its_rules_identity_and_fix():
    with np.errstate(all="ignore"):
        findings = run_rules(_input(), Settings())
    negative = next(f for f in findings if f.rule == "BN002")
    assert (negative.name, negative.severity, negative.channels) == (
        "negative-variance", Severity.ERROR, (1,),
    )  # fmt: skip
    assert negative.fix.startswith("Recalibrate the statistics")
