"""The HTML report: one self-contained page a person would rather look at than read.

It opens from disk (a CI artifact, a mail attachment) with nothing else: inline CSS, SVG
drawn by `bnstat.formats.svg`, no script, font, image or network reference. In order:
the summary with the reason for the exit code; then per checkpoint an overview with one
row per layer, where running_var (log scale) and running_mean sit on axes shared by the
whole checkpoint, so an outlier layer stands out by position and by the colour of its
worst finding; the findings with their fixes; and per layer (collapsed unless it has
findings) histograms of its statistics and |gamma| per channel with dead channels marked.
Every part collapses (`<details>`), which keeps a 200-layer model usable. The style
sheet lives in `html_style`, the per-layer sections and shared pieces in `html_parts`.

Checkpoints are untrusted input: every string taken from one (paths, layer names,
messages) is escaped; element ids are built from positions, never from names.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from bnstat.formats import svg
from bnstat.formats.display import Display
from bnstat.formats.html_data import data_part
from bnstat.formats.html_parts import (
    SPREAD,
    badges,
    flagged_layers,
    layer_name,
    layer_sections,
    open_attribute,
    part,
    sev_class,
)
from bnstat.formats.html_style import CSS, LEGEND
from bnstat.formats.names import abbreviate
from bnstat.formats.text import (
    FindingGroup,
    by_severity,
    checkpoint_title,
    exit_reason,
    grouped,
    location,
    number,
    severity_counts,
    summary_line,
)
from bnstat.report.inspection import CheckpointReport, Distribution, Finding, LayerReport, Report
from bnstat.report.severity import Severity
from bnstat.rules.base import channel_list
from bnstat.wording import counted

OVERVIEW_WIDTH = 340  # units per overview axis (drawn as wide as its column)
OVERVIEW_NAME = 28  # characters of a layer name in the overview; longer ones show their end


def render_html(report: Report, display: Display) -> str:
    sections = "".join(_checkpoint(i, entry, report) for i, entry in enumerate(report.checkpoints))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>bnstat: {escape(summary_line(report))}</title><style>{CSS}</style></head>"
        f"<body><main>{_header(report, display.exit_code)}{_summary_table(report)}{sections}"
        "</main></body></html>\n"
    )


def _header(report: Report, code: int) -> str:
    version = f"bnstat {escape(report.tool_version)} · " if report.tool_version else ""
    return (
        f"<header><h1>BatchNorm statistics report</h1><p class='sub'>{version}"
        f"{escape(summary_line(report))}</p><p class='verdict exit{code}'>"
        f"{escape(exit_reason(report, code))}</p></header>"
    )


def _summary_table(report: Report) -> str:
    """One row per checkpoint, worst first: unreadable files (with the reason), then by
    their errors, warnings and infos; ties keep the order of the inputs; then the files
    skipped because they hold no model, with what they hold."""
    titles = ("checkpoint", "format", "layers", "errors", "warnings", "infos")
    head = "".join(f"<th class='{t}'>{t}</th>" for t in titles)
    order = sorted(enumerate(report.checkpoints), key=lambda item: _worst_first(item[1]))
    rows = "".join(_summary_row(i, entry) for i, entry in order)
    rows += "".join(
        f"<tr class='sev-none'><td><code>{escape(side.path)}</code></td>"
        f"<td colspan='5' class='skipped'>skipped: {escape(side.contents)}</td></tr>"
        for side in report.no_model
    )
    return (
        f"<div class='scroll'><table class='summary'><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


SEVERITIES = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def _counts(entry: CheckpointReport) -> list[int]:
    """The checkpoint's errors, warnings and infos."""
    return [sum(1 for f in entry.findings if f.severity is s) for s in SEVERITIES]


def _worst_first(entry: CheckpointReport) -> tuple[bool, int, int, int]:
    errors, warnings, infos = _counts(entry)
    return entry.error is None, -errors, -warnings, -infos


def _summary_row(index: int, entry: CheckpointReport) -> str:
    title = f"<td><a href='#ck{index}'><code>{_path(entry)}</code></a></td>"
    if entry.error is not None:
        return (
            f"<tr class='sev-error'>{title}<td colspan='5' class='error'>could not be read: "
            f"{escape(entry.error.message)}</td></tr>"
        )
    counts = "".join(
        f"<td class='num {f'sev-{s.value}' if n else 'zero'}'>{n}</td>"
        for s, n in zip(SEVERITIES, _counts(entry), strict=True)
    )
    return (
        f"<tr class='{sev_class(entry.findings)}'>{title}<td class='format'>"
        f"{escape(entry.format or '?')}</td><td class='num layers'>{len(entry.layers)}</td>"
        f"{counts}</tr>"
    )


def _checkpoint(index: int, entry: CheckpointReport, report: Report) -> str:
    title = f"<code class='path'>{_path(entry)}</code>"
    if entry.error is not None:
        return (
            f"<details class='ckpt sev-error' id='ck{index}' open=''><summary>{title}<span "
            f"class='facts'>could not be read</span></summary><p class='error'>"
            f"{escape(entry.error.message)}</p></details>"
        )
    facts = [escape(entry.format or "?"), counted(len(entry.layers), "layer")]
    if entry.stripped_prefix:
        facts.append(f"key prefix <code>{escape(entry.stripped_prefix)}</code> removed")
    body = _findings(index, entry)
    if entry.layers:
        body = _overview(index, entry) + data_part(entry) + body + layer_sections(index, entry)
    opened = open_attribute(bool(entry.findings) or len(report.checkpoints) == 1)
    return (
        f"<details class='ckpt {sev_class(entry.findings)}' id='ck{index}'{opened}>"
        f"<summary>{title}<span class='facts'>{' · '.join(facts)}</span><span class='counts'>"
        f"{severity_counts(entry.findings)}</span></summary>{body}</details>"
    )


def _path(entry: CheckpointReport) -> str:
    """The checkpoint's path, allowed to break after each `/` in a narrow window."""
    return escape(checkpoint_title(entry)).replace("/", "/<wbr/>")


def _short_name(layer: LayerReport) -> str:
    """The name for the overview: its end when long (the whole one is in the tooltip)."""
    return escape(abbreviate(layer.name or "(top level)", OVERVIEW_NAME))


def _overview(index: int, entry: CheckpointReport) -> str:
    var_axis = svg.Axis(*svg.log_range([x.running_var for x in entry.layers]), OVERVIEW_WIDTH)
    mean_range = svg.symmetric_range([x.running_mean for x in entry.layers])
    mean_axis = svg.Axis(*mean_range, OVERVIEW_WIDTH)
    var_grid, mean_grid = svg.grid(var_axis, log=True), svg.grid(mean_axis, log=False)
    flagged = flagged_layers(entry)
    rows = "".join(
        f"<tr class='{sev_class(found)}'><td class='name'><a href='#ck{index}-L{i}' "
        f"title='{layer_name(layer)}'><code>{_short_name(layer)}</code></a></td>"
        f"<td class='num count'>{layer.channels}</td>"
        f"<td class='plot'>{_var_row(layer.running_var, var_axis, var_grid)}</td>"
        f"<td class='plot mean'>{_mean_row(layer.running_mean, mean_axis, mean_grid)}</td>"
        f"<td>{badges(found)}{_nonfinite(layer)}</td></tr>"
        for i, layer in enumerate(entry.layers)
        for found in [flagged.get(layer.name, [])]
    )
    return part(
        "Overview",
        f"{LEGEND}<div class='scroll'><table class='overview'><thead><tr><th>layer</th>"
        "<th class='num count'>C</th>"
        f"<th class='plot'>running_var (log scale){svg.axis_header(var_axis, log=True)}</th>"
        f"<th class='plot mean'>running_mean{svg.axis_header(mean_axis, log=False)}</th>"
        f"<th>findings</th></tr></thead><tbody>{rows}</tbody></table></div>",
    )


def _var_row(dist: Distribution, axis: svg.Axis, grid: str) -> str:
    title = f"running_var: {_spread(dist)}"
    if dist.negative:
        title += f"; {dist.negative} negative"
    return svg.band_row(_ends(dist, svg.log10), axis, grid, title)


def _mean_row(dist: Distribution, axis: svg.Axis, grid: str) -> str:
    return svg.band_row(_ends(dist, float), axis, grid, f"running_mean: {_spread(dist)}")


def _spread(dist: Distribution) -> str:
    return " ".join(f"{label} {number(getattr(dist, key))}" for key, label in SPREAD)


def _ends(dist: Distribution, scale: Callable[[float], float]) -> list[float] | None:
    """min, p01, median, p99, max on the axis's scale; None without a finite value."""
    values = [getattr(dist, key) for key, _ in SPREAD]
    return None if None in values else [scale(v) for v in values]


def _nonfinite(layer: LayerReport) -> str:
    dists = (layer.running_mean, layer.running_var, layer.weight, layer.bias)
    count = sum(d.nonfinite for d in dists if d is not None)
    return f"<span class='nonfinite'>{count} NaN/inf</span>" if count else ""


def _findings(index: int, entry: CheckpointReport) -> str:
    if not entry.findings:
        return part("Findings", "<p class='clean'>No findings.</p>")
    anchors = {layer.name: f"ck{index}-L{i}" for i, layer in enumerate(entry.layers)}
    cards = "".join(
        _finding(group, anchors)
        for _, found in by_severity(entry.findings)
        for group in grouped(found)
    )
    return part(f"Findings <span class='counts'>{severity_counts(entry.findings)}</span>", cards)


def _finding(group: FindingGroup, anchors: dict[str, str]) -> str:
    """One card per finding; identical findings of several layers share one card that
    links to each of their layers."""
    finding = group.first
    where = ", ".join(_where(f, anchors) for f in group.findings)
    if len(group.findings) > 1:
        where = f"{len(group.findings)} layers: {where}"
    channels = f" · channels {channel_list(finding.channels)}" if finding.channels else ""
    severity = finding.severity.value
    return (
        f"<div class='finding sev-{severity}'><p><span class='badge'>{severity}</span> "
        f"<b>{escape(finding.rule)}</b> {escape(finding.name)} · {where}{channels}</p>"
        f"<p>{escape(finding.message)}</p><p class='fix'><b>Fix:</b> {escape(finding.fix)}</p>"
        "</div>"
    )


def _where(finding: Finding, anchors: dict[str, str]) -> str:
    """The finding's layer as a link to its section (the checkpoint itself: no link)."""
    where = f"<code>{escape(location(finding))}</code>"
    anchor = None if finding.layer is None else anchors.get(finding.layer)
    return where if anchor is None else f"<a href='#{anchor}'>{where}</a>"
