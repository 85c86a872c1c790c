"""The human report for a terminal, drawn with rich.

Per checkpoint: a header, the per-layer table (inspect only) with a log-scale histogram
of each layer's variances on a range shared by the whole checkpoint, so layers can be
compared by eye, then the findings grouped by severity with their fixes. The report ends
with a summary and the reason for the exit code.
"""

from __future__ import annotations

import io

import numpy as np
from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from bnstat.formats.columns import Column, table_of_width
from bnstat.formats.display import Display
from bnstat.formats.text import (
    FindingGroup,
    by_severity,
    checkpoint_title,
    data_lines,
    eps_note,
    exit_reason,
    fetch_cost,
    grouped,
    location,
    min_abs_weight,
    number,
    severity_counts,
    skipped_lines,
    summary_line,
    value_range,
)
from bnstat.report.inspection import CheckpointReport, LayerReport, Report
from bnstat.report.severity import Severity
from bnstat.rules.base import channel_list
from bnstat.wording import counted, span

SPARK = " ▁▂▃▄▅▆▇█"
HISTOGRAM_BINS = 12
STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def string_console(color: bool, width: int) -> tuple[Console, io.StringIO]:
    """A rich console that renders into a string, with or without terminal colours."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        soft_wrap=False,
    )
    return console, buffer


def text_of(buffer: io.StringIO) -> str:
    """What a string console printed, without the spaces rich pads lines with."""
    return "".join(line.rstrip(" \n") + "\n" for line in buffer.getvalue().splitlines(True))


def render_table(report: Report, display: Display) -> str:
    console, buffer = string_console(display.color, display.width)
    for entry in report.checkpoints:
        _print_checkpoint(console, entry, display.layers)
    for line in skipped_lines(report):
        console.print(Text(line, style="dim"), overflow="fold")
    console.print(Text(summary_line(report), style="bold"))
    code = display.exit_code
    console.print(Text(exit_reason(report, code), style="red" if code else "green"))
    return text_of(buffer)


def print_title(console: Console, title: str) -> None:
    """A rule led by `title`, or the title alone, wrapped, when no rule fits beside it."""
    if cell_len(title) + 4 <= console.width:
        console.rule(Text(title, style="bold"), align="left")
    else:
        console.print(Text(title, style="bold"), overflow="fold")


def _print_checkpoint(console: Console, entry: CheckpointReport, with_layers: bool) -> None:
    print_title(console, checkpoint_title(entry))
    if entry.error is not None:
        console.print(Text(f"could not be read: {entry.error.message}", style="bold red"))
        console.print()
        return
    facts = [entry.format or "?", counted(len(entry.layers), "layer")]
    if entry.stripped_prefix:
        facts.append(f"key prefix {entry.stripped_prefix!r} removed")
    if entry.cost is not None:
        facts.append(fetch_cost(entry.cost))
    facts += [note for note in (eps_note(entry),) if note]
    console.print(Text(" · ".join(facts), style="dim"))
    if entry.data is not None:
        run = entry.data
        console.print(
            Text(
                f"run on {run.folder} ({counted(run.samples, 'sample')}, model from "
                f"{run.model}): mean shift in stored std and var ratio measured/stored",
                style="dim",
            )
        )
        for line in data_lines(run):
            console.print(Text(line, style="dim" if line.startswith("input:") else "yellow"))
    if with_layers and entry.layers:
        console.print(_layer_table(entry, console.width))
    _print_findings(console, entry)
    console.print()


def _layer_table(entry: CheckpointReport, width: int) -> Table:
    flagged: dict[str, list[str]] = {}
    for finding in entry.findings:
        if finding.layer is not None:
            flagged.setdefault(finding.layer, []).append(finding.rule)
    low, high = _shared_log_range(entry.layers)
    layers = entry.layers
    codes = [" ".join(dict.fromkeys(flagged.get(layer.name, []))) for layer in layers]
    first = [layer.data is not None and layer.data.first_divergent for layer in layers]
    names = [
        Text(layer.name or "(top level)", style="bold" if is_first else "")
        for layer, is_first in zip(layers, first, strict=True)
    ]
    findings = [
        Text(code + (" (first off)" if is_first else ""), style="yellow")
        for code, is_first in zip(codes, first, strict=True)
    ]
    columns = [
        Column("layer", names, "left", kind="name"),
        Column("C", [str(layer.channels) for layer in layers], drop=4),
        Column("batches", [_count(layer.num_batches_tracked) for layer in layers], drop=2),
        Column("running_mean", [value_range(layer.running_mean) for layer in layers], drop=1),
        Column("running_var", [value_range(layer.running_var) for layer in layers], drop=5),
        Column(
            f"log10 var {low:.0f}..{high:.0f}",
            [histogram(layer.values.running_var, low, high) for layer in layers],
            "left",
            drop=0,
        ),
        Column("min|weight|", [number(min_abs_weight(layer)) for layer in layers], drop=3),
        *_data_columns(layers),
        Column("findings", findings, "left", kind="words"),
    ]
    return table_of_width(columns, width)


def _data_columns(layers: tuple[LayerReport, ...]) -> list[Column]:
    """With --data: the largest mean shift and the range of variance ratios on the data."""
    if all(layer.data is None for layer in layers):
        return []
    shifts, ratios = [], []
    for layer in layers:
        data = layer.data
        shifts.append("-" if data is None else number(data.mean_shift_max))
        ratios.append(
            "-" if data is None else span(number(data.var_ratio_min), number(data.var_ratio_max))
        )
    return [
        Column("mean shift", shifts, drop=7),
        Column("var ratio", ratios, drop=6),
    ]


def _count(batches: int | None) -> str:
    return "-" if batches is None else str(batches)


def _shared_log_range(layers: tuple[LayerReport, ...]) -> tuple[float, float]:
    """Whole decades covering the 1st..99th percentile of every layer's variances."""
    lows = [layer.running_var.p01 for layer in layers if layer.running_var.p01]
    highs = [layer.running_var.p99 for layer in layers if layer.running_var.p99]
    positive_lows = [v for v in lows if v > 0]
    if not positive_lows or not highs:
        return -1.0, 1.0
    low, high = np.floor(np.log10(min(positive_lows))), np.ceil(np.log10(max(max(highs), 1e-300)))
    return float(low), float(max(high, low + 1))


def histogram(values: np.ndarray, low: float, high: float, bins: int = HISTOGRAM_BINS) -> str:
    """A one-line histogram of log10(values) over [low, high]; values outside are clamped."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return "?" * bins
    with np.errstate(divide="ignore"):
        logs = np.clip(np.log10(np.maximum(finite, 1e-300)), low, high)
    counts, _ = np.histogram(logs, bins=bins, range=(low, high))
    top = counts.max()
    return "".join(SPARK[int(np.ceil(c / top * (len(SPARK) - 1)))] for c in counts)


def _print_findings(console: Console, entry: CheckpointReport) -> None:
    if not entry.findings:
        console.print(Text("no findings", style="green"))
        return
    for severity, found in by_severity(entry.findings):
        console.print(Text(f"{severity.value}s ({len(found)})", style=STYLES[severity]))
        for group in grouped(found):
            _print_group(console, group, STYLES[severity])
    console.print(Text(severity_counts(entry.findings), style="bold"))


def _print_group(console: Console, group: FindingGroup, style: str) -> None:
    """A finding: rule, where, channels, then its message and fix; identical findings of
    several layers once, with the list of their layers."""
    finding, count = group.first, len(group.findings)
    head = Text(f"{finding.rule} {finding.name}  ", style=style)
    head.append(location(finding) if count == 1 else f"in {count} layers", style="bold")
    if finding.channels:
        head.append(f"  channels {channel_list(finding.channels)}")
    console.print(Padding(head, (0, 0, 0, 2)))
    if count > 1:
        names = Text(", ".join(location(f) for f in group.findings), style="bold")
        console.print(Padding(names, (0, 0, 0, 4)))
    console.print(Padding(Text(finding.message), (0, 0, 0, 4)))
    console.print(Padding(Text(f"fix: {finding.fix}", style="dim"), (0, 0, 0, 4)))
