"""The JSON report, schema version 1 (fields may be added, never renamed or removed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bnstat.formats.display import Display
from bnstat.formats.text import eps_source, finite_or_none
from bnstat.report.inspection import (
    CheckpointReport,
    DataRun,
    Distribution,
    EpsConfig,
    Finding,
    LayerData,
    LayerReport,
    Report,
)
from bnstat.report.recalibration import Unreadable

SCHEMA_VERSION = 1


def render_json(report: Report, display: Display) -> str:
    """Compact JSON (an indent makes the encoder several times slower on big models)."""
    return json.dumps(report_dict(report), allow_nan=False) + "\n"


def report_dict(report: Report) -> dict[str, Any]:
    summary = report.summary
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "bnstat", "version": report.tool_version},
        "checkpoints": [_checkpoint(c) for c in report.checkpoints],
        "skipped_files": [{"path": s.path, "reason": s.contents} for s in report.no_model],
        "summary": {
            "checkpoints": summary.checkpoints,
            "layers": summary.layers,
            "error": summary.error,
            "warning": summary.warning,
            "info": summary.info,
            "unreadable": summary.unreadable,
            "skipped": summary.skipped,
            "data_unreadable": summary.data_unreadable,
            "fail_on": report.fail_on.value,
        },
    }


def _checkpoint(entry: CheckpointReport) -> dict[str, Any]:
    """One model's entry; a URL's also says what reading it cost (a local file's does not,
    so that reports of local files stay as they were)."""
    fields: dict[str, Any] = {
        "path": entry.path,
        "format": entry.format,
        "source": entry.source,
        "stripped_prefix": entry.stripped_prefix,
        "error": entry.error.message if entry.error is not None else None,
        "eps_config": _eps_config(entry.eps_config) if entry.eps_config is not None else None,
        "layers": [_layer(layer, eps_source(entry, layer)) for layer in entry.layers],
        "findings": [finding_dict(f) for f in entry.findings],
        "data": _data_run(entry.data) if entry.data is not None else None,
    }
    if entry.cost is not None:
        fields |= {"file_size": entry.cost.size, "fetched_bytes": entry.cost.fetched,
                   "requests": entry.cost.requests}  # fmt: skip
    return fields


def _data_run(run: DataRun) -> dict[str, Any]:
    return {
        "folder": run.folder,
        "samples": run.samples,
        "model": run.model,
        "input": run.input,
        "options": {name: list(value) if isinstance(value, tuple) else value
                    for name, value in run.options},
        "unreadable": unreadable_list(run.unreadable),
        "warnings": list(run.warnings),
    }  # fmt: skip


def unreadable_list(unreadable: Sequence[Unreadable]) -> list[dict[str, str]]:
    """Skipped data files (and folders) as JSON: `[{"path": ..., "reason": ...}]`."""
    return [{"path": u.path, "reason": u.reason} for u in unreadable]


def _layer_data(data: LayerData) -> dict[str, Any]:
    return {
        "samples": data.samples,
        "mean_shift_max": finite_or_none(data.mean_shift_max),
        "mean_shift_median": finite_or_none(data.mean_shift_median),
        "var_ratio_max": finite_or_none(data.var_ratio_max),
        "var_ratio_min": finite_or_none(data.var_ratio_min),
        "channels_off": data.channels_off,
        "first_divergent": data.first_divergent,
    }


def _eps_config(config: EpsConfig) -> dict[str, Any]:
    return {"path": config.path, "key": config.key, "eps": config.eps}


def _layer(layer: LayerReport, source: str) -> dict[str, Any]:
    return {
        "name": layer.name,
        "channels": layer.channels,
        "dtype": layer.dtype,
        "num_batches_tracked": layer.num_batches_tracked,
        "affine": layer.affine,
        "kind": layer.kind,
        "eps": layer.eps,
        "eps_source": source,
        "running_mean": _distribution(layer.running_mean),
        "running_var": _distribution(layer.running_var),
        "weight": _distribution(layer.weight) if layer.weight else None,
        "bias": _distribution(layer.bias) if layer.bias else None,
        "data": _layer_data(layer.data) if layer.data is not None else None,
    }


def _distribution(dist: Distribution) -> dict[str, Any]:
    values = {
        "min": dist.min, "max": dist.max, "mean": dist.mean, "std": dist.std,
        "p01": dist.p01, "p50": dist.p50, "p99": dist.p99, "nonfinite": dist.nonfinite,
    }  # fmt: skip
    if dist.negative is not None:
        values["negative"] = dist.negative
    return values


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "name": finding.name,
        "severity": finding.severity.value,
        "layer": finding.layer,
        "channels": list(finding.channels),
        "message": finding.message,
        "fix": finding.fix,
    }
