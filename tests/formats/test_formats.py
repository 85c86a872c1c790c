"""Every output format over one shared set of findings: golden files, and format rules.

The shared report covers every kind of entry: layer findings of each severity, a
checkpoint-level error (a pickle calling os.getcwd), a file holding two models and an
unreadable file. Golden files are compared with the version blanked; set
BNSTAT_UPDATE_GOLDEN=1 to rewrite them after an intended change, and read the diff.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import jsonschema
import pytest
from rendering import render
from zoo import REPO, SAMPLES

from bnstat import __version__
from bnstat.analysis import analyze
from bnstat.formats import InspectFormat, inspect_emitter
from bnstat.report.inspection import Report
from bnstat.report.severity import FailOn
from bnstat.rules import RULES
from bnstat.settings import Settings

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
SARIF_SCHEMA = Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json"
SHARED = [
    "sample_checkpoints/bn004_dead_channel.pt",
    "sample_checkpoints/bn005_collapsed_variance.safetensors",
    "sample_checkpoints/pickle_payload.pt",
    "sample_checkpoints/ema_stale.pt",
    "sample_checkpoints/unreadable/empty.pt",
]
SUFFIX = {
    InspectFormat.TABLE: "txt", InspectFormat.JSON: "json", InspectFormat.MARKDOWN: "md",
    InspectFormat.SARIF: "sarif", InspectFormat.JUNIT: "xml", InspectFormat.GITHUB: "log",
    InspectFormat.HTML: "html",
}  # fmt: skip


@pytest.fixture(scope="module")
def shared(monkeypatch_module) -> Report:  # type: ignore[no-untyped-def]
    return analyze([Path(p) for p in SHARED], Settings(fail_on=FailOn.WARNING))


@pytest.fixture(scope="module")
def monkeypatch_module():  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # paths in the outputs are the relative ones given
        yield patch


@pytest.mark.parametrize("fmt", list(InspectFormat))
def test_every_format_has_an_emitter(fmt):
    assert callable(inspect_emitter(fmt))


WITH_LAYERS = (InspectFormat.TABLE, InspectFormat.MARKDOWN)  # the others show no layer table


@pytest.mark.parametrize("view", ["inspect", "check"])
@pytest.mark.parametrize("fmt", list(InspectFormat))
def test_golden_output(shared, fmt, view):
    """The table at 80 columns, the width of a pipe without COLUMNS. `check` has golden
    files of its own where it shows less than `inspect`, and prints the same elsewhere."""
    text = render(shared, fmt, view == "inspect", width=80).replace(__version__, "VERSION")
    golden = GOLDEN / f"{view if fmt in WITH_LAYERS else 'inspect'}.{SUFFIX[fmt]}"
    if os.environ.get("BNSTAT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_sarif_validates_against_the_schema_and_lists_every_finding(shared):
    log = json.loads(render(shared, InspectFormat.SARIF, layers=False))
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(log)
    (run,) = log["runs"]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == [rule.code for rule in RULES]
    assert len(run["results"]) == len(shared.findings)
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["BN004"] == "warning" and levels["BN011"] == "error" and levels["BN009"] == "note"
    assert run["invocations"][0]["executionSuccessful"] is False
    fingerprints = [r["partialFingerprints"]["primaryLocationLineHash"] for r in run["results"]]
    assert len(set(fingerprints)) == len(fingerprints)
    ema = [
        r
        for r in run["results"]
        if "ema_stale" in r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    ]
    assert all(r["message"]["text"].startswith(("model:", "ema:")) for r in ema)


def test_junit_counts_match_the_report(shared):
    root = ElementTree.fromstring(render(shared, InspectFormat.JUNIT, layers=False))
    suites = root.findall("testsuite")
    assert len(suites) == len(shared.checkpoints)
    failing = sum(
        1
        for entry in shared.checkpoints
        for f in {x.layer for x in entry.findings if shared.fail_on.fails(x.severity)}
    )
    assert int(root.get("failures")) == failing
    assert int(root.get("errors")) == 1
    layers = sum(len(entry.layers) + 1 for entry in shared.checkpoints if entry.error is None)
    assert int(root.get("tests")) == layers + 1
    for suite in suites:
        assert int(suite.get("tests")) == len(suite.findall("testcase"))


def test_github_commands_escape_what_the_syntax_needs(tmp_path, state_dict, write_pt):
    path = write_pt(
        {
            "bn.running_mean": state_dict["bn2d.running_mean"],
            "bn.running_var": -state_dict["bn2d.running_var"],
        },
        name="a,b:c.pt",
    )
    report = analyze([path], Settings())
    lines = render(report, InspectFormat.GITHUB, layers=False).splitlines()
    assert lines[0].startswith("::error file=") and "a%2Cb%3Ac.pt" in lines[0]
    assert "title=BN002 negative-variance::" in lines[0]
    assert lines[-1].startswith("::notice title=bnstat::exit 1")


def test_markdown_is_collapsible_per_checkpoint(shared):
    text = render(shared, InspectFormat.MARKDOWN, layers=False)
    assert text.count("<details") == len([e for e in shared.checkpoints if e.error is None])
    assert "could not be read" in text


def test_markdown_channels_are_indices_abbreviated_past_four(tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(SAMPLES / "healthy.safetensors")
    state["block1.bn1.weight"][[2, 5]] = 0.0
    state["fc_bn.weight"][10:20] = 0.0
    path = tmp_path / "dead.safetensors"
    save_file(state, path)
    rows = [r for r in render(analyze([path], Settings()), InspectFormat.MARKDOWN, layers=False)
            .splitlines() if "BN004" in r]  # fmt: skip
    cells = {row.split("|")[3].strip(" `"): row.split("|")[4].strip() for row in rows}
    assert cells == {"block1.bn1": "[2, 5]", "fc_bn": "[10, 11, 12, 13, ... +6 more]"}
