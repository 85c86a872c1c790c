"""`bnstat diff` as a terminal table: per layer the drift, and whether it changed."""

from __future__ import annotations

from rich.text import Text

from bnstat.formats.columns import Column, table_of_width
from bnstat.formats.display import Display
from bnstat.formats.table import string_console, text_of
from bnstat.formats.text import checkpoint_title, number
from bnstat.report.diff import DiffReport, LayerDiff
from bnstat.wording import counted, span


def _channels(layer: LayerDiff) -> str:
    a, b = layer.channels
    return str(a) if a == b else f"{a if a is not None else '-'} -> {b if b is not None else '-'}"


def _verdict(layer: LayerDiff) -> Text:
    if layer.drift is None:
        where = "channels differ"
        if None in layer.channels:
            where = "only in B" if layer.channels[0] is None else "only in A"
        return Text(where, style="yellow")
    return Text("changed" if layer.changed else "same", style="yellow" if layer.changed else "dim")


def _numbers(layer: LayerDiff) -> list[str]:
    """mean shift, variance ratio, |gamma| change and channels moved, or dashes."""
    moved = layer.drift
    if moved is None:
        return ["-"] * 4
    return [
        number(moved.mean_shift),
        span(number(moved.var_ratio_low), number(moved.var_ratio_high), " .. "),
        "-" if layer.weight_change is None else number(layer.weight_change),
        f"{moved.changed}/{layer.channels[0]}",
    ]


def render_diff_table(report: DiffReport, display: Display) -> str:
    width = display.width
    console, buffer = string_console(display.color, width)
    console.print(
        Text(f"A: {checkpoint_title(report.a)}\nB: {checkpoint_title(report.b)}", style="bold")
    )
    console.print(Text(report.matching.description, style="dim"))
    layers = report.layers
    numbers = list(zip(*(_numbers(layer) for layer in layers), strict=True)) or [()] * 4
    titles = ("mean shift (std)", "var B/A", "|gamma| change", "channels moved")
    columns = [
        Column("layer", [layer.name for layer in layers], "left", kind="name"),
        Column("C", [_channels(layer) for layer in layers], drop=2),
        *(Column(title, cells, drop=drop) for title, cells, drop in
          zip(titles, numbers, (4, 3, 1, 0), strict=True)),
        Column("", [_verdict(layer) for layer in layers], "left", kind="words"),
    ]  # fmt: skip
    console.print(table_of_width(columns, width))
    console.print(
        Text(
            f"{len(report.changed)} of {counted(len(report.layers), 'layer')} changed", style="bold"
        )
    )
    return text_of(buffer)
