"""The recalibration report as a terminal table: per layer how far the statistics moved
and how exact they are, then what the run did (data, strategy, cache, passes, output)."""

from __future__ import annotations

from rich.text import Text

from bnstat.formats.columns import Column, table_of_width
from bnstat.formats.display import Display
from bnstat.formats.table import string_console, text_of
from bnstat.formats.text import number, skipped_line
from bnstat.report.recalibration import CacheUse, LayerChange, RecalibrationReport
from bnstat.wording import megabytes


def _ratio_range(layer: LayerChange) -> str:
    return f"{number(layer.var_ratio_low)} .. {number(layer.var_ratio_high)}"


def render_recalibration_table(report: RecalibrationReport, display: Display) -> str:
    width = display.width
    console, buffer = string_console(display.color, width)
    layers = report.layers
    columns = [
        Column("layer", [layer.name or "(top level)" for layer in layers], "left", kind="name"),
        Column("C", [str(layer.channels) for layer in layers], drop=1),
        Column("mean shift (std)", [number(layer.mean_shift) for layer in layers], drop=2),
        Column("var new/old", [_ratio_range(layer) for layer in layers], drop=4),
        Column("changed", [f"{layer.changed}/{layer.channels}" for layer in layers], drop=0),
        Column(
            "eval mismatch after",
            ["-" if layer.consistency is None else f"{layer.consistency:.1e}" for layer in layers],
            drop=3,
        ),
    ]
    console.print(table_of_width(columns, width))
    for line in _facts(report):
        console.print(Text(line))
    return text_of(buffer)


def _facts(report: RecalibrationReport) -> list[str]:
    sweeps = [p for p in report.passes if p.label != "verify"]
    processes = f" in {report.processes} processes" if report.processes > 1 else ""
    lines = [
        f"{report.samples} samples in {report.batches} batches of {report.batch_size} "
        f"({report.data_kind}), method {report.method}, device {report.device}{processes}, "
        f"model from {report.model}",
        f"input: {report.input}",
        report.strategy,
        *([report.plan.description] if report.plan is not None else []),
        *([_cache_line(report.cache)] if report.cache is not None else []),
        f"{len(sweeps)} pass{'' if len(sweeps) == 1 else 'es'} over the data in "
        f"{sum(p.seconds for p in sweeps):.2f} s"
        + (
            f" + verification on {report.passes[-1].samples} samples in "
            f"{report.passes[-1].seconds:.2f} s"
            if len(sweeps) < len(report.passes)
            else ""
        )
        + f"; {report.seconds:.2f} s in all",
    ]
    if report.sweep_changes:
        lines.append(
            "change made by each further sweep: "
            + ", ".join(f"{c:.1e}" for c in report.sweep_changes)
        )
    if report.consistency is not None:
        lines.append(f"largest eval-mode mismatch after recalibration: {report.consistency:.1e}")
    if report.skipped:
        lines.append(
            f"{report.skipped} samples left out: the model was exported for batches of exactly "
            f"{report.batch_size}"
        )
    if report.unreached:
        lines.append(
            f"not reached by the forward pass (left unchanged): {', '.join(report.unreached)}"
        )
    if report.unreadable:
        lines.append(skipped_line(report.unreadable))
    lines += [f"warning: {warning}" for warning in report.warnings]
    lines += list(report.notes)
    if report.output:
        lines.append(f"written to {report.output}")
    return lines


def _cache_line(cache: CacheUse) -> str:
    if cache.spilled_bytes:
        disk = (
            f"{megabytes(cache.spilled_bytes)} written to disk and "
            f"{megabytes(cache.read_bytes)} read back"
        )
    else:
        disk = "nothing written to disk"
    return f"activation cache: largest {megabytes(cache.peak_bytes)} held, {disk}"
