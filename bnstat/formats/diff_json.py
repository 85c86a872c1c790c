"""`bnstat diff --format json`: per layer the drift, for scripts."""

from __future__ import annotations

import json
from typing import Any

from bnstat.formats.display import Display
from bnstat.formats.text import finite_or_none
from bnstat.report.diff import DiffReport


def render_diff_json(report: DiffReport, display: Display) -> str:
    layers: list[dict[str, Any]] = []
    for layer in report.layers:
        moved = layer.drift
        layers.append(
            {
                "name": layer.name,
                "name_b": layer.name_b,
                "channels": list(layer.channels),
                "mean_shift": finite_or_none(moved.mean_shift) if moved else None,
                "var_ratio": [
                    finite_or_none(moved.var_ratio_low),
                    finite_or_none(moved.var_ratio_high),
                ]
                if moved
                else None,
                "weight_change": finite_or_none(layer.weight_change),
                "channels_moved": moved.changed if moved else None,
                "changed": layer.changed,
            }
        )
    body = {
        "schema_version": 1,
        "a": {"path": report.a.path, "source": report.a.source},
        "b": {"path": report.b.path, "source": report.b.source},
        "matching": report.matching.value,
        "layers": layers,
        "changed": len(report.changed),
    }
    return json.dumps(body, indent=2) + "\n"
