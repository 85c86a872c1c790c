"""The HTML report's "On the data" part: how each layer's statistics fit the data it got.

Two charts share one axis of layers in execution order (`inspect --data` orders them so):
above, the largest mean shift per layer in stored standard deviations; below, the range
of variance ratios (measured/stored, log scale, 1 in the middle). Layers with channels
off are drawn in the colour of a warning, and a dashed line marks the first layer off,
where the problem starts; everything after it may only be its echo.
"""

from __future__ import annotations

import math
from html import escape

from bnstat.formats.html_parts import part
from bnstat.formats.text import data_problems, number
from bnstat.report.inspection import CheckpointReport, LayerData, LayerReport

WIDTH, CHART, LEFT, GAP = 640, 84, 44, 22  # units; each chart's height
RATIO_FLOOR = math.log10(4)  # the ratio axis spans at least 1/4 .. 4


def data_part(entry: CheckpointReport) -> str:
    """The part, or nothing when the checkpoint was not run on data."""
    measured = [layer for layer in entry.layers if layer.data is not None]
    if entry.data is None or not measured:
        return ""
    run = entry.data
    first = next((x.name for x in measured if x.data and x.data.first_divergent), None)
    where = f"; the first layer off is <code>{escape(first)}</code>" if first else ""
    caption = (
        f"<p class='legend'>Run on <code>{escape(run.folder)}</code>, {run.samples} samples "
        f"(model from {escape(run.model)}): per layer in execution order, the largest mean "
        f"shift and the range of variance ratios measured/stored{where}.</p>"
    )
    problems = "".join(f"<li>{escape(line)}</li>" for line in data_problems(run))
    listed = f"<ul class='data-problems'>{problems}</ul>" if problems else ""
    fed = f"<p class='legend'>Input: {escape(run.input)}</p>" if run.input else ""
    plot = f"<div class='scroll'>{_plot(measured)}</div>"
    return part("On the data", caption + fed + listed + plot)


def _plot(layers: list[LayerReport]) -> str:
    step = (WIDTH - LEFT - 8) / len(layers)
    data = [layer.data for layer in layers if layer.data is not None]
    shifts = [d.mean_shift_max if d.mean_shift_max is not None else math.nan for d in data]
    top = max([1.0, *(s for s in shifts if math.isfinite(s))])
    body = [_shift_bars(data, shifts, top, step), _ratio_ranges(data, step)]
    body += [_marks(layers, step), _axes(top)]
    height = 2 * CHART + GAP + 16
    return (
        f'<svg class="chart data" width="100%" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">{"".join(body)}</svg>'
    )


def _x(slot: int, step: float) -> float:
    return LEFT + (slot + 0.5) * step


def _css(data: LayerData) -> str:
    return "dataoff" if data.channels_off else "bar"


def _shift_bars(data: list[LayerData], shifts: list[float], top: float, step: float) -> str:
    width = max(step - 1.5, 1.0)
    paths: dict[str, str] = {"bar": "", "dataoff": ""}
    for slot, (item, shift) in enumerate(zip(data, shifts, strict=True)):
        if math.isfinite(shift):
            paths[_css(item)] += f"M{_x(slot, step):.1f} {CHART}v-{shift / top * (CHART - 8):.1f}"
    return "".join(
        f'<path class="{css}" stroke-width="{width:.1f}" d="{d}"/>' for css, d in paths.items() if d
    )


def _log_ends(item: LayerData) -> tuple[float, float] | None:
    low, high = item.var_ratio_min, item.var_ratio_max
    if low is None or high is None or low <= 0 or high <= 0:
        return None
    return math.log10(low), math.log10(high)


def _ratio_ranges(data: list[LayerData], step: float) -> str:
    ends = [_log_ends(item) for item in data]
    reach = max([RATIO_FLOOR, *(abs(v) for pair in ends if pair for v in pair)])
    middle, half = 2 * CHART + GAP - CHART / 2, (CHART - 8) / 2
    width = max(step - 1.5, 1.0)
    paths: dict[str, str] = {"bar": "", "dataoff": ""}
    for slot, (item, pair) in enumerate(zip(data, ends, strict=True)):
        if pair is not None:
            y_low, y_high = (middle - value / reach * half for value in pair)
            length, centre = max(y_low - y_high, 1.5), (y_low + y_high) / 2
            paths[_css(item)] += f"M{_x(slot, step):.1f} {centre + length / 2:.1f}v-{length:.1f}"
    labels = (
        f'<text x="{LEFT - 4}" y="{middle - half + 4:.1f}" text-anchor="end">'
        f"{number(10**reach)}</text>"
        f'<text x="{LEFT - 4}" y="{middle + 4:.1f}" text-anchor="end">1</text>'
        f'<text x="{LEFT - 4}" y="{middle + half + 4:.1f}" text-anchor="end">'
        f"{number(10**-reach)}</text>"
        f'<path class="base" d="M{LEFT} {middle:.1f}h{WIDTH - LEFT - 8}"/>'
    )
    return labels + "".join(
        f'<path class="{css}" stroke-width="{width:.1f}" d="{d}"/>' for css, d in paths.items() if d
    )


def _marks(layers: list[LayerReport], step: float) -> str:
    """The first layer off, and a tooltip per layer with its name and numbers."""
    marks = []
    for slot, layer in enumerate(layers):
        data = layer.data
        if data is None:
            continue
        x = _x(slot, step)
        tip = (
            f"{escape(layer.name)}: mean shift up to {number(data.mean_shift_max)} std, "
            f"variance ratio {number(data.var_ratio_min)} to {number(data.var_ratio_max)}, "
            f"{data.channels_off} of {layer.channels} channels off"
        )
        marks.append(
            f'<rect class="hit" x="{x - step / 2:.1f}" y="0" width="{step:.1f}" '
            f'height="{2 * CHART + GAP}"><title>{tip}</title></rect>'
        )
        if data.first_divergent:
            marks.append(
                f'<path class="ref" d="M{x:.1f} 4V{2 * CHART + GAP}"/><text x="{x + 3:.1f}" '
                f'y="{2 * CHART + GAP + 12}">first off: {escape(layer.name)}</text>'
            )
    return "".join(marks)


def _axes(top: float) -> str:
    bottom = 2 * CHART + GAP
    return (
        f'<path class="base" d="M{LEFT} {CHART}h{WIDTH - LEFT - 8}M{LEFT} 8V{CHART}'
        f'M{LEFT} {CHART + GAP + 8}V{bottom}"/>'
        f'<text x="{LEFT - 4}" y="14" text-anchor="end">{number(top)}</text>'
        f'<text x="{LEFT - 4}" y="{CHART}" text-anchor="end">0</text>'
        f'<text x="{LEFT + 4}" y="10">largest mean shift (std)</text>'
        f'<text x="{LEFT + 4}" y="{CHART + GAP + 4}">variance ratio, measured/stored (log)</text>'
    )
