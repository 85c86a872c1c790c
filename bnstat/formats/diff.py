"""`bnstat diff` as a terminal table or as JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from bnstat.diff import DiffReport, LayerDiff
from bnstat.formats.table import string_console
from bnstat.formats.text import checkpoint_title, finite_or_none, number


def _channels(layer: LayerDiff) -> str:
    a, b = layer.channels
    return str(a) if a == b else f"{a if a is not None else '-'} -> {b if b is not None else '-'}"


def _row(layer: LayerDiff) -> list[str | Text]:
    if layer.drift is None:
        where = "channels differ"
        if None in layer.channels:
            where = "only in B" if layer.channels[0] is None else "only in A"
        return [layer.name, _channels(layer), "-", "-", "-", "-", Text(where, style="yellow")]
    moved = layer.drift
    style = "yellow" if layer.changed else "dim"
    return [
        layer.name,
        _channels(layer),
        number(moved.mean_shift),
        f"{number(moved.var_ratio_low)} .. {number(moved.var_ratio_high)}",
        "-" if layer.weight_change is None else number(layer.weight_change),
        f"{moved.changed}/{layer.channels[0]}",
        Text("changed" if layer.changed else "same", style=style),
    ]


def render_diff_table(report: DiffReport, color: bool = False, width: int = 120) -> str:
    console, buffer = string_console(color, width)
    console.print(
        Text(f"A: {checkpoint_title(report.a)}\nB: {checkpoint_title(report.b)}", style="bold")
    )
    console.print(Text(report.matching.description, style="dim"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("layer", overflow="fold")
    for title in ("C", "mean shift (std)", "var B/A", "|gamma| change", "channels moved", ""):
        table.add_column(title, justify="right" if title else "left", no_wrap=True)
    for layer in report.layers:
        table.add_row(*_row(layer))
    console.print(table)
    console.print(
        Text(f"{len(report.changed)} of {len(report.layers)} layers changed", style="bold")
    )
    return buffer.getvalue()


def render_diff_json(report: DiffReport) -> str:
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
