"""The HTML report: one self-contained page a person would rather look at than read.

It opens from disk (a CI artifact, a mail attachment) with nothing else: inline CSS, SVG
drawn by `bnstat.formats.svg`, no script, font, image or network reference. In order:
the summary with the reason for the exit code; then per checkpoint an overview with one
row per layer, where running_var (log scale) and running_mean sit on axes shared by the
whole checkpoint, so an outlier layer stands out by position and by the colour of its
worst finding; the findings with their fixes; and per layer (collapsed unless it has
findings) histograms of its statistics and |gamma| per channel with dead channels marked.
Every part collapses (`<details>`), which keeps a 200-layer model usable.

Checkpoints are untrusted input: every string taken from one (paths, layer names,
messages) is escaped; element ids are built from positions, never from names.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import numpy as np

from bnstat.formats import svg
from bnstat.formats.text import (
    FindingGroup,
    by_severity,
    checkpoint_title,
    grouped,
    location,
    number,
    severity_counts,
    summary_line,
)
from bnstat.report import (
    CheckpointReport,
    Distribution,
    Finding,
    LayerReport,
    Report,
    Severity,
    exit_code,
    exit_reason,
)
from bnstat.rules.base import channel_list
from bnstat.wording import counted

OVERVIEW_WIDTH = 340  # pixels per overview axis
OPEN_LAYERS = 20  # layers with findings start open when there are at most this many
SPREAD = (("min", "min"), ("p01", "1%"), ("p50", "median"), ("p99", "99%"), ("max", "max"))

CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--error:#dc2626;--warning:#d97706;
--info:#2563eb;--ok:#15803d}
.sev-none{--sev:#94a3b8;--tint:transparent}.sev-info{--sev:var(--info);--tint:#eff6ff}
.sev-warning{--sev:var(--warning);--tint:#fff7e6}.sev-error{--sev:var(--error);--tint:#fef2f2}
body{margin:0;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}main{max-width:1320px;margin:0 auto;padding:20px 28px 60px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
a{color:inherit;text-decoration:none}a:hover code{text-decoration:underline}
h1{font-size:22px;margin:0}.sub,.facts,.legend,.clean{color:var(--muted)}.sub{margin:2px 0 10px}
.verdict{display:inline-block;margin:0 0 16px;padding:6px 14px;border-radius:6px;
font-weight:600;background:#dcfce7;color:#14532d}
.verdict.exit1,.verdict.exit2{background:#fee2e2;color:#991b1b}
table{border-collapse:collapse}th{text-align:left;font-weight:600}
.num,.stats td{text-align:right;font-variant-numeric:tabular-nums}
.summary td,.summary th{padding:4px 14px 4px 8px;border-bottom:1px solid var(--line)}
.summary tbody tr{box-shadow:inset 3px 0 var(--sev)}.zero{color:#c0c4cc}
td.sev-error,td.sev-warning,td.sev-info{color:var(--sev);font-weight:700}
.error{color:var(--error);font-weight:600}
details.ckpt{border:1px solid var(--line);border-left:4px solid var(--sev);border-radius:8px;
margin:14px 0;padding:4px 18px 14px}
summary{cursor:pointer}details.ckpt>summary{padding:8px 0}.path{font-size:15px;font-weight:700}
summary .facts,summary .counts{margin-left:14px;font-size:13px}
summary .counts{color:var(--sev);font-weight:600}.sev-none>summary .counts{color:var(--ok)}
details.part>summary{font-size:15px;font-weight:700;margin:18px 0 8px}
.part>summary .counts{font-weight:500;color:var(--muted)}
.legend{font-size:12.5px;margin:0 0 6px}svg{display:block}
.legend svg{display:inline-block;vertical-align:middle;margin-right:4px}
.overview{font-size:13px}.overview td{padding:0 6px;height:18px;white-space:nowrap}
.overview thead th{position:sticky;top:0;background:#fff;z-index:1;vertical-align:bottom;
font-size:12px;padding:4px 6px 0;border-bottom:1px solid var(--line)}
.overview tbody tr{background:var(--tint)}.overview tbody tr:hover{background:#eef2f7}
.overview td.name{max-width:24em;overflow:hidden;text-overflow:ellipsis}
.overview .plot{padding:0 4px}.overview tr:not(.sev-none) td.name,
details.layer:not(.sev-none)>summary{box-shadow:inset 3px 0 var(--sev)}
svg text{font:10px system-ui,"DejaVu Sans",sans-serif;fill:var(--muted)}
.grid{stroke:#e3e6ea}.tick,.base{stroke:#9ca3af;fill:none}.ref{stroke:#6b7280;stroke-dasharray:3 3}
.band{fill:var(--sev);opacity:.8}.sev-none .band{fill:#9fb3c8;opacity:1}
.whisk{stroke:var(--sev);stroke-width:1.2;fill:none}.sev-none .whisk{stroke:#7f93a8}
.med{stroke:#111827;stroke-width:2}.off{fill:var(--sev)}.sev-none .off{fill:#475569}
.bar{stroke:#5b7fa6}.spread{stroke:#c3d0de}path.dead{fill:var(--error)}
.badge{display:inline-block;padding:0 6px;margin-right:4px;border-radius:4px;
font-size:11.5px;font-weight:700;color:#fff;background:var(--sev)}
.nonfinite,.dead{color:var(--error);font-weight:600;font-size:12px}
.finding{border-left:3px solid var(--sev);background:var(--tint);border-radius:4px;
padding:6px 12px;margin:8px 0}.finding p{margin:3px 0}.fix{color:#374151}
details.layer{border-top:1px solid var(--line)}details.layer>summary{padding:5px 2px}
details.layer>summary code{font-weight:600;margin:0 10px 0 4px}
details.layer>summary .facts{margin:0 12px 0 0;font-size:12.5px}
details.layer[open]{padding-bottom:12px}
.notes{margin:6px 0;padding-left:22px}.notes li::marker{color:var(--sev)}
.charts{display:flex;flex-wrap:wrap;gap:10px 26px;margin:6px 0}
figure{margin:0}figcaption{font-size:12.5px;color:var(--muted);margin-bottom:2px}
.stats{font-size:12.5px;margin-top:6px}.stats td,.stats th{padding:2px 10px 2px 0}
.stats thead th{color:var(--muted);font-weight:500;text-align:right}
"""

LEGEND = (
    "<p class='legend sev-none'><svg width='44' height='14'><path class='whisk' "
    "d='M2 7H42M2 3V11M42 3V11'/><rect class='band' x='10' y='2' width='24' height='10' "
    "rx='2'/><path class='med' d='M20 0V14'/></svg> box: 1st to 99th percentile of the "
    "layer's channels, tick: median, whiskers: min and max, arrowheads: beyond the axis. "
    "Colour: the layer's worst finding (<span class='badge sev-error'>error</span> <span "
    "class='badge sev-warning'>warning</span> <span class='badge sev-info'>info</span>). "
    "The axes are shared by all layers of the checkpoint; hover a row for its numbers, "
    "click a name for its details.</p>"
)


def render_html(report: Report) -> str:
    sections = "".join(_checkpoint(i, entry, report) for i, entry in enumerate(report.checkpoints))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>bnstat: {escape(summary_line(report))}</title><style>{CSS}</style></head>"
        f"<body><main>{_header(report)}{_summary_table(report)}{sections}</main></body></html>\n"
    )


def _header(report: Report) -> str:
    version = f"bnstat {escape(report.tool_version)} · " if report.tool_version else ""
    return (
        f"<header><h1>BatchNorm statistics report</h1><p class='sub'>{version}"
        f"{escape(summary_line(report))}</p><p class='verdict exit{exit_code(report)}'>"
        f"{escape(exit_reason(report))}</p></header>"
    )


def _summary_table(report: Report) -> str:
    titles = ("checkpoint", "format", "layers", "errors", "warnings", "infos")
    head = "".join(f"<th>{t}</th>" for t in titles)
    rows = "".join(_summary_row(i, entry) for i, entry in enumerate(report.checkpoints))
    return f"<table class='summary'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _summary_row(index: int, entry: CheckpointReport) -> str:
    title = f"<td><a href='#ck{index}'><code>{escape(checkpoint_title(entry))}</code></a></td>"
    if entry.error is not None:
        return f"<tr class='sev-error'>{title}<td colspan='5' class='error'>unreadable</td></tr>"
    counts = "".join(
        f"<td class='num {f'sev-{s.value}' if n else 'zero'}'>{n}</td>"
        for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
        for n in [sum(1 for f in entry.findings if f.severity is s)]
    )
    return (
        f"<tr class='{_sev(entry.findings)}'>{title}<td>{escape(entry.format or '?')}</td>"
        f"<td class='num'>{len(entry.layers)}</td>{counts}</tr>"
    )


def _checkpoint(index: int, entry: CheckpointReport, report: Report) -> str:
    title = f"<code class='path'>{escape(checkpoint_title(entry))}</code>"
    if entry.error is not None:
        return (
            f"<details class='ckpt sev-error' id='ck{index}' open=''><summary>{title}<span "
            f"class='facts'>could not be read</span></summary><p class='error'>"
            f"{escape(entry.error)}</p></details>"
        )
    facts = [escape(entry.format or "?"), counted(len(entry.layers), "layer")]
    if entry.stripped_prefix:
        facts.append(f"key prefix <code>{escape(entry.stripped_prefix)}</code> removed")
    body = _findings(index, entry)
    if entry.layers:
        body = _overview(index, entry) + body + _layers(index, entry)
    start_open = bool(entry.findings) or len(report.checkpoints) == 1
    return (
        f"<details class='ckpt {_sev(entry.findings)}' id='ck{index}'{_open(start_open)}>"
        f"<summary>{title}<span class='facts'>{' · '.join(facts)}</span><span class='counts'>"
        f"{severity_counts(entry.findings)}</span></summary>{body}</details>"
    )


def _open(start_open: bool) -> str:
    return " open=''" if start_open else ""


def _part(title: str, body: str) -> str:
    """A collapsible part of a checkpoint's section, open at first."""
    return f"<details class='part' open=''><summary>{title}</summary>{body}</details>"


def _sev(findings: tuple[Finding, ...] | list[Finding]) -> str:
    """The CSS class of the worst severity among `findings`."""
    worst = max((f.severity for f in findings), key=lambda s: s.rank, default=None)
    return "sev-none" if worst is None else f"sev-{worst.value}"


def _by_layer(entry: CheckpointReport) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in entry.findings:
        if finding.layer is not None:
            grouped.setdefault(finding.layer, []).append(finding)
    return grouped


def _badges(findings: list[Finding]) -> str:
    codes = dict.fromkeys((f.rule, f.severity.value) for f in findings)
    return "".join(f"<span class='badge sev-{sev}'>{escape(code)}</span>" for code, sev in codes)


def _name(layer: LayerReport) -> str:
    return escape(layer.name or "(top level)")


def _overview(index: int, entry: CheckpointReport) -> str:
    var_axis = svg.Axis(*svg.log_range([x.running_var for x in entry.layers]), OVERVIEW_WIDTH)
    mean_range = svg.symmetric_range([x.running_mean for x in entry.layers])
    mean_axis = svg.Axis(*mean_range, OVERVIEW_WIDTH)
    var_grid, mean_grid = svg.grid(var_axis, log=True), svg.grid(mean_axis, log=False)
    flagged = _by_layer(entry)
    rows = "".join(
        f"<tr class='{_sev(found)}'><td class='name'><a href='#ck{index}-L{i}' "
        f"title='{_name(layer)}'><code>{_name(layer)}</code></a></td>"
        f"<td class='num'>{layer.channels}</td>"
        f"<td class='plot'>{_var_row(layer.running_var, var_axis, var_grid)}</td>"
        f"<td class='plot'>{_mean_row(layer.running_mean, mean_axis, mean_grid)}</td>"
        f"<td>{_badges(found)}{_nonfinite(layer)}</td></tr>"
        for i, layer in enumerate(entry.layers)
        for found in [flagged.get(layer.name, [])]
    )
    return _part(
        "Overview",
        f"{LEGEND}<table class='overview'><thead><tr><th>layer</th><th class='num'>C</th>"
        f"<th class='plot'>running_var (log scale){svg.axis_header(var_axis, log=True)}</th>"
        f"<th class='plot'>running_mean{svg.axis_header(mean_axis, log=False)}</th>"
        f"<th>findings</th></tr></thead><tbody>{rows}</tbody></table>",
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
        return _part("Findings", "<p class='clean'>No findings.</p>")
    anchors = {layer.name: f"ck{index}-L{i}" for i, layer in enumerate(entry.layers)}
    cards = "".join(
        _finding(group, anchors)
        for _, found in by_severity(entry.findings)
        for group in grouped(found)
    )
    return _part(f"Findings <span class='counts'>{severity_counts(entry.findings)}</span>", cards)


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


def _layers(index: int, entry: CheckpointReport) -> str:
    flagged = _by_layer(entry)
    start_open = len(flagged) <= OPEN_LAYERS
    sections = "".join(
        _layer(f"ck{index}-L{i}", layer, flagged.get(layer.name, []), start_open)
        for i, layer in enumerate(entry.layers)
    )
    return _part(f"Layers <span class='counts'>{len(entry.layers)}</span>", sections)


def _layer(anchor: str, layer: LayerReport, found: list[Finding], start_open: bool) -> str:
    count = "-" if layer.num_batches_tracked is None else str(layer.num_batches_tracked)
    facts = [counted(layer.channels, "channel"), escape(layer.dtype), f"{count} batches"]
    if layer.kind:
        facts.insert(0, escape(layer.kind))
    notes = "".join(
        f"<li class='sev-{f.severity.value}'><b>{escape(f.rule)}</b> {escape(f.message)}</li>"
        for f in found
    )
    notes = f"<ul class='notes'>{notes}</ul>" if notes else ""
    return (
        f"<details class='layer {_sev(found)}' id='{anchor}'{_open(bool(found) and start_open)}>"
        f"<summary><code>{_name(layer)}</code><span class='facts'>{' · '.join(facts)}</span>"
        f"{_badges(found)}</summary>{notes}"
        f"{_charts(layer, found)}{_stats_table(layer)}</details>"
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


def _stats_table(layer: LayerReport) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in (("", ""), *SPREAD, ("", "NaN/inf")))
    rows = "".join(
        f"<tr><th>{name}</th>"
        + "".join(f"<td>{number(getattr(d, key))}</td>" for key, _ in SPREAD)
        + f"<td class='{'nonfinite' if d.nonfinite else 'zero'}'>{d.nonfinite}</td></tr>"
        for name in ("running_mean", "running_var", "weight", "bias")
        for d in [getattr(layer, name)]
        if d is not None
    )
    eps = f"eps {layer.eps:g} ({'from the file' if layer.eps_from_file else 'assumed'})"
    return (
        f"<table class='stats'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"<p class='facts'>{eps}</p>"
    )
