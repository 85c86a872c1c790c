"""Markdown for pull-request comments: one collapsible section per checkpoint.

The `inspect` view adds the per-layer table; the `check` view lists findings only.
"""

from __future__ import annotations

from bnstat.formats.display import Display
from bnstat.formats.text import (
    checkpoint_title,
    data_problems,
    eps_note,
    exit_reason,
    location,
    min_abs_weight,
    number,
    severity_counts,
    skipped_lines,
    summary_line,
    value_range,
)
from bnstat.report.inspection import CheckpointReport, LayerReport, Report
from bnstat.rules.base import channel_list
from bnstat.wording import counted

CHANNELS_SHOWN = 4  # channel indices in the findings table; more are counted


def render_markdown(report: Report, display: Display) -> str:
    lines = [f"## bnstat: {summary_line(report)}", ""]
    for entry in report.checkpoints:
        lines += _checkpoint(entry, display.layers)
    if report.no_model:
        lines += [*(f"- {_cell(line)}" for line in skipped_lines(report)), ""]
    lines += [f"_{exit_reason(report, display.exit_code)}_", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _checkpoint(entry: CheckpointReport, with_layers: bool) -> list[str]:
    title = f"<code>{_cell(checkpoint_title(entry))}</code>"
    if entry.error is not None:
        return [f"**{title}: could not be read:** {_cell(entry.error.message)}", ""]
    status = ", ".join([severity_counts(entry.findings)] + [n for n in (eps_note(entry),) if n])
    lines = [
        f"<details{' open' if entry.findings else ''}><summary>{title}: "
        f"{counted(len(entry.layers), 'layer')}, {status}</summary>",
        "",
    ]
    if entry.data is not None and (problems := data_problems(entry.data)):
        lines += [*(f"- {_cell(problem)}" for problem in problems), ""]
    if entry.findings:
        lines += ["| severity | rule | layer | channels | message |", "|---|---|---|---|---|"]
        lines += [
            f"| {f.severity.value} | {f.rule} {f.name} | `{_cell(location(f))}` | "
            f"{channel_list(f.channels, CHANNELS_SHOWN) if f.channels else ''} | "
            f"{_cell(f.message)} |"
            for f in entry.findings
        ]
        lines.append("")
    if with_layers and entry.layers:
        lines += [
            "| layer | C | batches | running_mean | running_var | min \\|weight\\| |",
            "|---|---|---|---|---|---|",
        ]
        lines += [_layer_row(layer) for layer in entry.layers]
        lines.append("")
    return [*lines, "</details>", ""]


def _layer_row(layer: LayerReport) -> str:
    count = "-" if layer.num_batches_tracked is None else str(layer.num_batches_tracked)
    return (
        f"| `{_cell(layer.name)}` | {layer.channels} | {count} | {value_range(layer.running_mean)} "
        f"| {value_range(layer.running_var)} | {number(min_abs_weight(layer))} |"
    )
