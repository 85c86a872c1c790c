"""The recalibration report as JSON: `recalibrate --format json` and `--report FILE`."""

from __future__ import annotations

import json
from typing import Any

from bnstat.formats.display import Display
from bnstat.formats.json_report import unreadable_list
from bnstat.formats.text import finite_or_none
from bnstat.report.recalibration import PlanRecord, RecalibrationReport


def _plan(plan: PlanRecord) -> dict[str, Any]:
    """The cache's plan, as it was made before the first pass."""
    fields = {name: getattr(plan, name) for name in PlanRecord.__dataclass_fields__}
    return {
        name: round(value, 4) if isinstance(value, float) else value
        for name, value in fields.items()
        if name != "description"
    }


def render_recalibration_json(report: RecalibrationReport, display: Display) -> str:
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
            "read_bytes": report.cache.read_bytes,
        },
        "plan": None if report.plan is None else _plan(report.plan),
        "seconds": round(report.seconds, 4),
        "unreadable": unreadable_list(report.unreadable),
        "warnings": list(report.warnings),
        "notes": list(report.notes),
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
