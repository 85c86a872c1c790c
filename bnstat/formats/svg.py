"""SVG pictures for the HTML report, written as strings (no plotting library).

Each public function returns one `<svg>` element. Only finite numbers ever reach a
coordinate: NaN, infinity, values too large to subtract safely and the values a log
scale cannot place (zero, negative) are left out of histograms and bars (the page says
how many) and drawn as arrowheads at the edge of an overview axis. Colours and fonts come
from the page's CSS classes (`band`, `med`, `bar`, `dead`, ...), which keeps each picture
small: a 200-layer report stays around a megabyte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bnstat.formats.text import number
from bnstat.report.inspection import Distribution

ROW_HEIGHT = 18
MARGIN = 14  # room left and right of an overview axis for tick labels and arrowheads
EDGE = 8  # percent of an overview column within which a tick label is aligned inward
ARROW = 5  # size of the arrowhead for values beyond an overview axis
WHISKER_DECADES = 3.0  # how far past the bands a shared log axis may stretch
CHART = (300, 96, 34, 18)  # histogram and bar chart: width, height, left and bottom margins
HISTOGRAM_BINS = 32  # at most; fewer for layers with few channels
MAX_BARS = 120  # more channels than this are drawn as min..max per group of channels
LIMIT = 1e150  # larger magnitudes are not drawn: differences of them could overflow


@dataclass(frozen=True)
class Axis:
    """Maps [low, high] onto [left, left + width] pixels, clamping what lies outside."""

    low: float
    high: float
    width: float
    left: float = MARGIN

    def x(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return self.left + min(max(share, 0.0), 1.0) * self.width

    @classmethod
    def rounded(cls, low: float, high: float, log: bool, width: float, left: float) -> Axis:
        """An axis from the round number below `low` to the one above `high`."""
        if log and high - low < 2:
            grid = _log_grid(low, high)
            below = max(g for g in grid if g <= low + 1e-9)
            return cls(below, min(g for g in grid if g >= high - 1e-9), width, left)
        step = _decade_step(high - low) if log else _nice((high - low) / 4)
        return cls(math.floor(low / step) * step, math.ceil(high / step) * step, width, left)

    def ticks(self, log: bool) -> list[tuple[float, str]]:
        """Round positions and labels (on a log axis 1, 2, 5 x 10^k, or whole decades);
        the two ends when fewer than two round numbers fall inside."""
        values = _log_ticks(self.low, self.high) if log else _linear_ticks(self.low, self.high)
        if len(values) < 2:
            values = [self.low, self.high]
        return [(self.x(v), compact(10.0**v if log else v)) for v in values]


def _linear_ticks(low: float, high: float, step: float = 0.0) -> list[float]:
    step = step or _nice((high - low) / 4)
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    if high - low >= 2:
        return _linear_ticks(low, high, _decade_step(high - low))
    return [v for v in _log_grid(low, high) if low - 1e-9 <= v <= high + 1e-9]


def _log_grid(low: float, high: float) -> list[float]:
    """log10 of 1, 2 and 5 times each power of ten around [low, high]."""
    decades = range(math.floor(low), math.ceil(high) + 1)
    return [k + math.log10(m) for k in decades for m in (1, 2, 5)]


def _decade_step(span: float) -> float:
    """Whole decades between ticks, so that about five ticks cover `span`."""
    return float(max(1, math.ceil(span / 5 - 1e-9)))


def _nice(span: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `span`."""
    power = 10.0 ** math.floor(math.log10(span)) if span > 0 else 1.0
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= span - 1e-12)


def compact(value: float) -> str:
    """A tick label: `0.02`, `100`, `1e-5`, `2e+6` without the plus."""
    text = f"{value + 0.0:.4g}"  # + 0.0 turns -0 into 0
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def log10(value: float) -> float:
    """log10 that maps zero and negatives to -inf (an arrowhead at the left edge)."""
    return math.log10(value) if value > 0 else -math.inf


def drawable(values: np.ndarray, log: bool) -> np.ndarray:
    """Which values a histogram or bar chart can place."""
    mask = np.isfinite(values) & (np.abs(values) < LIMIT)
    return np.asarray(mask & (values > 0)) if log else mask


def log_range(dists: Sequence[Distribution]) -> tuple[float, float]:
    """Whole decades covering every layer's band (1st..99th percentile), stretched towards
    the extremes by at most WHISKER_DECADES, so one stray channel cannot squash the rest."""
    bands = [log10(v) for d in dists for v in (d.p01, d.p99) if v is not None and v > 0]
    if not bands:
        return -1.0, 1.0
    ends = [log10(v) for d in dists for v in (d.min, d.max) if v is not None and v > 0]
    low = max(min(bands + ends), min(bands) - WHISKER_DECADES)
    high = min(max(bands + ends), max(bands) + WHISKER_DECADES)
    return float(math.floor(low)), float(max(math.ceil(high), math.floor(low) + 1))


def symmetric_range(dists: Sequence[Distribution]) -> tuple[float, float]:
    """[-r, r], r a round number covering every band and, up to twice that, the extremes."""
    bands = [abs(v) for d in dists for v in (d.p01, d.p99) if v is not None]
    ends = [abs(v) for d in dists for v in (d.min, d.max) if v is not None]
    band = max(bands, default=0.0)
    reach = min(max([band, *ends]), 2 * band) if band > 0 else max(ends, default=0.0)
    half = _nice(min(reach, LIMIT)) if reach > 0 else 1.0
    return -half, half


def axis_header(axis: Axis, log: bool) -> str:
    """Tick labels above an overview column, placed in percent of its width so that they
    stay over the rows' ticks however wide the column is drawn. Labels near an end are
    aligned inward so they stay inside the column. For narrow windows, where the page hides
    them, labels between the ends are marked `inner`, and every other one `alt` as well
    when there are more than three."""
    total = axis.width + 2 * axis.left
    ticks = axis.ticks(log)
    marks = []
    for i, (x, label) in enumerate(ticks):
        share = 100 * x / total
        anchor = "start" if share < EDGE else "end" if share > 100 - EDGE else "middle"
        hidden = (["inner"] if 0 < i < len(ticks) - 1 else []) + (
            ["alt"] if len(ticks) > 3 and i % 2 else []
        )
        css = f' class="{" ".join(hidden)}"' if hidden else ""
        marks.append(
            f'<text{css} x="{share:.2f}%" y="12" text-anchor="{anchor}">{label}</text>'
            f'<line class="tick" x1="{share:.2f}%" x2="{share:.2f}%" y1="15" y2="22"/>'
        )
    return f'<svg class="axis" width="100%" height="22">{"".join(marks)}</svg>'


def grid(axis: Axis, log: bool) -> str:
    """The faint vertical lines of an overview row, the same in every row of a column."""
    lines = "".join(f"M{x:.1f} 0V{ROW_HEIGHT}" for x, _ in axis.ticks(log))
    return f'<path class="grid" d="{lines}"/>'


def band_row(ends: Sequence[float] | None, axis: Axis, grid_path: str, title: str) -> str:
    """One overview row: whiskers min..max, a band p01..p99 and a median tick.

    `ends` (min, p01, median, p99, max) are on the axis's scale, log10 for variances, and
    may be infinite; None (no finite value in the layer) draws the grid alone. `title`,
    the tooltip, must be escaped already.
    """
    body = [f"<title>{title}</title>", grid_path]
    if ends is not None:
        low, p01, p50, p99, high = (axis.x(v) for v in ends)
        body.append(
            f'<path class="whisk" d="M{low:.1f} 9H{high:.1f}M{low:.1f} 5V13M{high:.1f} 5V13"/>'
            f'<rect class="band" x="{p01 - 2:.1f}" y="4" width="{p99 - p01 + 4:.1f}" '
            f'height="10" rx="2"/><path class="med" d="M{p50:.1f} 2V16"/>'
            + _beyond(ends[0] < axis.low, ends[-1] > axis.high, axis)
        )
    return _svg(axis.width + 2 * axis.left, ROW_HEIGHT, "".join(body), "row", fluid=True)


def _beyond(below: bool, above: bool, axis: Axis) -> str:
    """Arrowheads just outside the axis for values it does not reach."""
    heads = ""
    if below:
        heads += f"M{axis.left - 2 - ARROW:.1f} 9l{ARROW} -{ARROW}v{2 * ARROW}z"
    if above:
        heads += f"M{axis.left + axis.width + 2 + ARROW:.1f} 9l-{ARROW} -{ARROW}v{2 * ARROW}z"
    return f'<path class="off" d="{heads}"/>' if heads else ""


@dataclass(frozen=True)
class Plot:
    """A chart's drawing area: slot i spans `step` pixels from `left`; y grows up from
    `base`, `scale` pixels per unit."""

    left: float
    step: float
    base: float
    scale: float

    def middle(self, slot: float) -> float:
        return self.left + (slot + 0.5) * self.step


def histogram(values: np.ndarray, log: bool) -> str:
    """Channel counts over the layer's own range rounded out (log10 for variances)."""
    data = values[drawable(values, log)]
    width, height, left, bottom = CHART
    if len(data) == 0:
        return _empty()
    data = np.log10(data) if log else data
    low, high = float(data.min()), float(data.max())
    if high - low < 1e-9:  # one value: give it some room
        half = 0.5 if log else max(abs(low) * 0.1, 0.05)
        low, high = low - half, high + half
    axis = Axis.rounded(low, high, log, width - left - 12, left)
    bins = min(max(math.ceil(2 * math.sqrt(len(data))), 8), HISTOGRAM_BINS)
    counts, _ = np.histogram(data, bins=bins, range=(axis.low, axis.high))
    top, base = int(counts.max()), height - bottom
    bars = _bars("bar", counts.astype(float), Plot(left, axis.width / bins, base, (base - 8) / top))
    return _svg(width, height, bars + _frame(axis, axis.ticks(log), str(top)), "chart")


def gamma_bars(weight: np.ndarray, dead: Sequence[int]) -> str:
    """|gamma| per channel (min and max per group of channels above MAX_BARS), the layer's
    median as a dashed line, dead channels marked under the axis."""
    magnitude = np.abs(weight)
    ok = drawable(magnitude, log=False)
    width, height, left, bottom = CHART
    if not ok.any():
        return _empty()
    n, bars = len(magnitude), min(len(magnitude), MAX_BARS)
    starts = (np.arange(bars) * n) // bars
    highs = np.maximum.reduceat(np.where(ok, magnitude, -np.inf), starts)
    lows = np.minimum.reduceat(np.where(ok, magnitude, np.inf), starts)
    top = float(magnitude[ok].max()) or 1.0
    axis = Axis(0, bars, width - left - 8, left)
    plot = Plot(left, axis.width / bars, height - bottom, (height - bottom - 8) / top)
    ends = [(plot.middle(0), "0"), (plot.middle(bars - 1), str(n - 1))]
    body = [
        _bars("spread", np.where(highs > lows, highs, np.nan), plot),
        _bars("bar", lows, plot),
        _median_line(float(np.median(magnitude[ok])), plot, axis.width),
        _dead_marks([c * bars // n for c in dead if 0 <= c < n], plot),
        _frame(axis, ends, number(top)),
    ]
    return _svg(width, height, "".join(body), "chart")


def _bars(css: str, heights: np.ndarray, plot: Plot) -> str:
    """Vertical bars as one stroked path (half the bytes of rectangles); NaN: no bar."""
    width = max(plot.step - (1.0 if plot.step > 3 else 0.0), 0.6)
    bars = "".join(
        f"M{plot.middle(i):.1f} {plot.base}v-{h * plot.scale:.1f}"
        for i, h in enumerate(heights.tolist())
        if math.isfinite(h) and h * plot.scale >= 0.05
    )
    return f'<path class="{css}" stroke-width="{width:.1f}" d="{bars}"/>' if bars else ""


def _median_line(median: float, plot: Plot, width: float) -> str:
    return (
        f'<path class="ref" d="M{plot.left} {plot.base - median * plot.scale:.1f}h{width:.1f}">'
        f"<title>median |gamma| {number(median)}</title></path>"
    )


def _dead_marks(slots: list[int], plot: Plot) -> str:
    marks = "".join(f"M{plot.middle(s):.1f} {plot.base + 1}l-4 7h8z" for s in sorted(set(slots)))
    return f'<path class="dead" d="{marks}"/>' if marks else ""


def _frame(axis: Axis, ticks: list[tuple[float, str]], top_label: str) -> str:
    """Axes, x tick labels, and 0 and `top_label` at the ends of the y range."""
    _, height, left, bottom = CHART
    base = height - bottom
    labels = "".join(
        f'<text x="{x:.1f}" y="{height - 3}" text-anchor="middle">{label}</text>'
        for x, label in ticks
    )
    return (
        f'<path class="base" d="M{left} {base}h{axis.width:.1f}M{left} 8V{base}"/>'
        f'<text x="{left - 4}" y="14" text-anchor="end">{top_label}</text>'
        f'<text x="{left - 4}" y="{base}" text-anchor="end">0</text>{labels}'
    )


def _empty() -> str:
    width, height, _, _ = CHART
    text = f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">nothing to draw</text>'
    return _svg(width, height, text, "chart")


def _svg(width: float, height: float, body: str, css: str, fluid: bool = False) -> str:
    """An `<svg>` of `width` x `height` units; a `fluid` one stretches to the width of its
    cell (the page keeps its strokes from stretching)."""
    size = 'width="100%" preserveAspectRatio="none"' if fluid else f'width="{width:g}"'
    return (
        f'<svg class="{css}" {size} height="{height:g}" viewBox="0 0 {width:g} {height:g}">'
        f"{body}</svg>"
    )
