"""The recalibration report as a terminal table or as JSON (`--report FILE`)."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from bnstat.formats.fit import Column, fitted_table
from bnstat.formats.table import string_console, text_of
from bnstat.formats.text import finite_or_none, number
from bnstat.recalibrate.cache import CacheUse
from bnstat.recalibrate.summary import LayerChange, RecalibrationReport


def _ratio_range(layer: LayerChange) -> str:
    return f"{number(layer.var_ratio_low)} .. {number(layer.var_ratio_high)}"


def render_recalibration(report: RecalibrationReport, color: bool = False, width: int = 120) -> str:
    console, buffer = string_console(color, width)
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
    console.print(fitted_table(columns, width))
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
        *([_cache_line(report.cache)] if report.cache is not None else []),
        f"{len(sweeps)} pass{'' if len(sweeps) == 1 else 'es'} over the data in "
        f"{sum(p.seconds for p in sweeps):.2f} s"
        + (
            f" + verification {report.passes[-1].seconds:.2f} s"
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
        shown = "; ".join(f"{u.path}: {u.reason}" for u in report.unreadable[:5])
        more = f"; +{len(report.unreadable) - 5} more" if len(report.unreadable) > 5 else ""
        lines.append(f"{len(report.unreadable)} unreadable file(s) skipped: {shown}{more}")
    if report.output:
        lines.append(f"written to {report.output}")
    return lines


def _cache_line(cache: CacheUse) -> str:
    disk = (
        f"{megabytes(cache.spilled_bytes)} written to disk" if cache.spilled_bytes else "in memory"
    )
    return (
        f"activation cache: largest {megabytes(cache.peak_bytes)}, {disk} "
        f"(--cache-mb {cache.budget_bytes // 2**20}, decoded data included)"
    )


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def recalibration_json(report: RecalibrationReport) -> str:
    data: dict[str, Any] = {
        "schema_version": 1,
        "checkpoint": report.checkpoint,
        "output": report.output,
        "source": report.source,
        "model": report.model,
        "method": report.method,
        "device": report.device,
        "batch_size": report.batch_size,
        "data_kind": report.data_kind,
        "samples": report.samples,
        "batches": report.batches,
        "skipped_samples": report.skipped,
        "processes": report.processes,
        "input": report.input,
        "input_shape": list(report.input_shape) if report.input_shape else None,
        "strategy": report.strategy,
        "cache": None
        if report.cache is None
        else {
            "peak_bytes": report.cache.peak_bytes,
            "spilled_bytes": report.cache.spilled_bytes,
            "budget_bytes": report.cache.budget_bytes,
        },
        "seconds": round(report.seconds, 4),
        "unreadable": [{"path": u.path, "reason": u.reason} for u in report.unreadable],
        "passes": [
            {
                "label": p.label,
                "seconds": round(p.seconds, 4),
                "samples": p.samples,
                "batches": p.batches,
            }
            for p in report.passes
        ],
        "sweep_changes": list(report.sweep_changes),
        "consistency": report.consistency,
        "unreached": list(report.unreached),
        "layers": [
            {
                "name": layer.name,
                "channels": layer.channels,
                "mean_shift": finite_or_none(layer.mean_shift),
                "var_ratio": [
                    finite_or_none(layer.var_ratio_low),
                    finite_or_none(layer.var_ratio_high),
                ],
                "changed_channels": layer.changed,
                "consistency": layer.consistency,
            }
            for layer in report.layers
        ],
    }
    return json.dumps(data, indent=2) + "\n"
