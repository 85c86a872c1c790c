"""Identical findings of several layers are shown once, listing the layers, in the table
and the HTML report; the machine formats keep one result per layer."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from rendering import render
from zoo import SAMPLES

from bnstat.analysis import analyze
from bnstat.formats import InspectFormat
from bnstat.settings import Settings

RESET = SAMPLES / "stats_reset.safetensors"  # every layer's statistics at their initial values
LAYERS = ["block1.bn1", "block1.bn2", "block2.bn1", "block2.bn2", "block2.shortcut.bn", "fc_bn",
          "stem.bn"]  # fmt: skip


def test_the_table_shows_identical_findings_once_with_their_layers(cli):
    text = cli("check", RESET).stdout
    assert text.count("BN003 untrained-stats") == 1
    assert "warnings (7)" in text and "BN003 untrained-stats  in 7 layers" in text
    listed = " ".join(text.split()).split("in 7 layers ")[1].split(" statistics were")[0]
    assert listed.split(", ") == LAYERS
    assert text.count("statistics were never updated") == 1 and text.count("fix:") == 1


def test_different_findings_stay_apart(cli):
    both = analyze([SAMPLES / "bn005_collapsed_variance.safetensors"], Settings())
    messages = [f.message for f in both.findings]
    assert len(set(messages)) == len(messages) == 2
    text = cli("check", SAMPLES / "bn005_collapsed_variance.safetensors").stdout
    assert "in 2 layers" not in text and text.count("block2.bn2  channels [4, 9]") == 2


def test_the_html_report_gives_identical_findings_one_card_linking_each_layer():
    page = render(analyze([RESET], Settings()), InspectFormat.HTML)
    root = ET.fromstring(page.removeprefix("<!DOCTYPE html>\n"))
    cards = [e for e in root.iter("div") if "finding" in e.get("class", "").split()]
    (card,) = cards
    links = [a for a in card.iter("a") if a.get("href", "").startswith("#ck0-L")]
    assert [a.findtext("code") for a in links] == LAYERS
    assert "7 layers:" in "".join(card.itertext())


def test_machine_formats_keep_one_result_per_layer(cli):
    report = json.loads(cli("check", RESET, "--format", "json").stdout)
    assert [f["layer"] for f in report["checkpoints"][0]["findings"]] == LAYERS
    sarif = json.loads(cli("check", RESET, "--format", "sarif").stdout)
    assert len(sarif["runs"][0]["results"]) == 7
    junit = ET.fromstring(cli("check", RESET, "--format", "junit", "--fail-on", "warning").stdout)
    assert int(junit.get("failures")) == 7
    github = cli("check", RESET, "--format", "github").stdout
    assert github.count("title=BN003 untrained-stats") == 7
