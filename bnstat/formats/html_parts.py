"""Pieces of the HTML report: the small helpers every section uses (collapsible parts,
severity classes, badges) and the per-layer sections, whose histograms and |gamma| bars
come from `bnstat.formats.svg`.

Every string taken from a checkpoint is escaped here as in `bnstat.formats.html`.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import numpy as np

from bnstat.formats import svg
from bnstat.formats.text import eps_source, number
from bnstat.report.inspection import CheckpointReport, Finding, LayerReport
from bnstat.rules.base import channel_list
from bnstat.wording import counted

OPEN_LAYERS = 20  # layers with findings start open when there are at most this many
SPREAD = (("min", "min"), ("p01", "1%"), ("p50", "median"), ("p99", "99%"), ("max", "max"))


def open_attribute(start_open: bool) -> str:
    """The attribute that makes a `<details>` start open, or nothing."""
    return " open=''" if start_open else ""


def part(title: str, body: str) -> str:
    """A collapsible part of a checkpoint's section, open at first."""
    return f"<details class='part' open=''><summary>{title}</summary>{body}</details>"


def sev_class(findings: tuple[Finding, ...] | list[Finding]) -> str:
    """The CSS class of the worst severity among `findings`."""
    worst = max((f.severity for f in findings), key=lambda s: s.rank, default=None)
    return "sev-none" if worst is None else f"sev-{worst.value}"


def flagged_layers(entry: CheckpointReport) -> dict[str, list[Finding]]:
    """The findings of each layer that has some."""
    grouped: dict[str, list[Finding]] = {}
    for finding in entry.findings:
        if finding.layer is not None:
            grouped.setdefault(finding.layer, []).append(finding)
    return grouped


def badges(findings: list[Finding]) -> str:
    codes = dict.fromkeys((f.rule, f.severity.value) for f in findings)
    return "".join(f"<span class='badge sev-{sev}'>{escape(code)}</span>" for code, sev in codes)


def layer_name(layer: LayerReport) -> str:
    return escape(layer.name or "(top level)")


def layer_sections(index: int, entry: CheckpointReport) -> str:
    flagged = flagged_layers(entry)
    start_open = len(flagged) <= OPEN_LAYERS
    sections = "".join(
        _layer(f"ck{index}-L{i}", layer, flagged.get(layer.name, []), start_open, eps_of(entry))
        for i, layer in enumerate(entry.layers)
    )
    return part(f"Layers <span class='counts'>{len(entry.layers)}</span>", sections)


def _layer(
    anchor: str, layer: LayerReport, found: list[Finding], start_open: bool, eps: EpsWords
) -> str:
    tracked = layer.num_batches_tracked
    count = "- batches" if tracked is None else counted(tracked, "batch", "batches")
    facts = [counted(layer.channels, "channel"), escape(layer.dtype), count]
    if layer.kind:
        facts.insert(0, escape(layer.kind))
    notes = "".join(
        f"<li class='sev-{f.severity.value}'><b>{escape(f.rule)}</b> {escape(f.message)}</li>"
        for f in found
    )
    notes = f"<ul class='notes'>{notes}</ul>" if notes else ""
    opened = open_attribute(bool(found) and start_open)
    return (
        f"<details class='layer {sev_class(found)}' id='{anchor}'{opened}>"
        f"<summary><code>{layer_name(layer)}</code><span class='facts'>{' · '.join(facts)}</span>"
        f"{badges(found)}</summary>{notes}"
        f"{_charts(layer, found)}{_stats_table(layer, eps(layer))}</details>"
    )


def _charts(layer: LayerReport, found: list[Finding]) -> str:
    values = layer.values
    var, mean = values.running_var, values.running_mean
    figures = [
        _figure(
            "running_var, log scale", svg.histogram(var, log=True), var, True, "NaN, inf or ≤ 0"
        ),
        _figure("running_mean", svg.histogram(mean, log=False), mean, False, "NaN or inf"),
    ]
    if values.weight is not None:
        dead = [c for f in found if f.rule == "BN004" for c in f.channels]
        caption = "|gamma| per channel" + (
            f", <span class='dead'>▲ dead {channel_list(dead)}</span>" if dead else ""
        )
        picture = svg.gamma_bars(values.weight, dead)
        figures.append(_figure(caption, picture, values.weight, False, "NaN or inf"))
    return f"<div class='charts'>{''.join(figures)}</div>"


def _figure(caption: str, picture: str, values: np.ndarray, log: bool, why: str) -> str:
    hidden = len(values) - int(svg.drawable(values, log).sum())
    note = f" <span class='nonfinite'>({hidden} {why}: not drawn)</span>" if hidden else ""
    return f"<figure><figcaption>{caption}{note}</figcaption>{picture}</figure>"


EpsWords = Callable[[LayerReport], str]
EPS_FROM = {"file": "from the file", "config": "from config.json", "assumed": "assumed"}


def eps_of(entry: CheckpointReport) -> EpsWords:
    """Where each layer's eps came from, in words."""
    return lambda layer: EPS_FROM[eps_source(entry, layer)]


def _stats_table(layer: LayerReport, eps_from: str) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in (("", ""), *SPREAD, ("", "NaN/inf")))
    rows = "".join(
        f"<tr><th>{name}</th>"
        + "".join(f"<td>{number(getattr(d, key))}</td>" for key, _ in SPREAD)
        + f"<td class='{'nonfinite' if d.nonfinite else 'zero'}'>{d.nonfinite}</td></tr>"
        for name in ("running_mean", "running_var", "weight", "bias")
        for d in [getattr(layer, name)]
        if d is not None
    )
    eps = f"eps {layer.eps:g} ({eps_from})"
    return (
        f"<div class='scroll'><table class='stats'><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        f"<p class='facts'>{eps}</p>"
    )
