"""Statistics over many small arrays at once.

A checkpoint's BatchNorm channels are kept as one flat float64 array per quantity with
`offsets` marking where each layer starts (a layered array). Every per-layer statistic
here is computed for all layers in a few numpy calls, so ten thousand layers cost about
what one big layer costs. Non-finite values are excluded from the statistics and counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

QUANTILES = (0.01, 0.5, 0.99)
MAX_SORT_GROUPS = 64  # distinct layer lengths sorted row-wise; beyond, one global sort


def layer_ids(offsets: np.ndarray) -> np.ndarray:
    """For each element, the index of the layer it belongs to."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


@dataclass(frozen=True)
class LayerStats:
    """Per-layer statistics over finite values; NaN where a layer has none."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    quantiles: dict[float, np.ndarray]
    finite: np.ndarray  # count of finite values
    nonfinite: np.ndarray  # count of NaN and +-inf values


def layer_stats(
    values: np.ndarray, offsets: np.ndarray, quantiles: Sequence[float] = QUANTILES
) -> LayerStats:
    """min, max, mean, population std and linear-interpolated quantiles per layer."""
    n_layers = len(offsets) - 1
    ids = layer_ids(offsets)
    finite = np.isfinite(values)
    counts = np.bincount(ids, weights=finite, minlength=n_layers)
    ordered = sort_within_layers(np.where(finite, values, np.inf), offsets)
    starts = offsets[:-1]
    low, high = _pick(ordered, starts, counts, 0.0), _pick(ordered, starts, counts, 1.0)
    # sums are taken in units of each layer's largest magnitude, so 1e300s cannot overflow
    scale = np.maximum(np.abs(np.nan_to_num(low)), np.abs(np.nan_to_num(high)))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = np.where(finite, values, 0.0) / scale[ids]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_scaled = np.bincount(ids, weights=scaled, minlength=n_layers) / counts
        deviation = np.where(finite, scaled - mean_scaled[ids], 0.0)
        spread = np.sqrt(np.bincount(ids, weights=deviation**2, minlength=n_layers) / counts)
    return LayerStats(
        min=low,
        max=high,
        mean=mean_scaled * scale,
        std=spread * scale,
        quantiles={q: _pick(ordered, starts, counts, q) for q in quantiles},
        finite=counts.astype(np.int64),
        nonfinite=(np.diff(offsets) - counts).astype(np.int64),
    )


def layer_median(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Median of the finite values of each layer (NaN where there are none)."""
    finite = np.isfinite(values)
    counts = np.bincount(layer_ids(offsets), weights=finite, minlength=len(offsets) - 1)
    ordered = sort_within_layers(np.where(finite, values, np.inf), offsets)
    return _pick(ordered, offsets[:-1], counts, 0.5)


def sort_within_layers(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`values` sorted inside each layer, layers kept in place.

    A model has few distinct channel counts: the layers of one length are sorted
    together as the rows of a 2-D array. With many lengths, one float sort orders all
    values and a stable sort by layer then regroups them, which numpy does as a
    linear-time radix sort when the layer ids fit in 16 bits.
    """
    lengths = np.diff(offsets)
    distinct = np.unique(lengths)
    if len(distinct) > MAX_SORT_GROUPS:
        return _sort_by_layer(values, layer_ids(offsets))
    ordered = np.empty_like(values)
    for length in distinct[distinct > 0].tolist():
        rows = offsets[:-1][lengths == length][:, None] + np.arange(length)
        ordered[rows] = np.sort(values[rows], axis=1)
    return ordered


def _sort_by_layer(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    order = np.argsort(values)
    layers = ids[order]
    if len(ids) and ids[-1] < 2**16:
        layers = layers.astype(np.uint16)
    return values[order[np.argsort(layers, kind="stable")]]


def _pick(ordered: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Quantile q of the first `counts` (finite, sorted) values of each layer."""
    has = counts > 0
    position = q * np.maximum(counts - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(counts.astype(np.int64) - 1, 0))
    low_index = np.where(has, starts + low, 0)
    high_index = np.where(has, starts + high, 0)
    if len(ordered) == 0:
        return np.full(len(starts), np.nan)
    low_value, high_value = ordered[low_index], ordered[high_index]
    with np.errstate(invalid="ignore"):
        result = low_value + (position - low) * (high_value - low_value)
        result = np.where(position == low, low_value, result)
    return np.where(has, result, np.nan)


def runs_by_layer(mask: np.ndarray, offsets: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(layer, local indices) for every layer where `mask` is true somewhere."""
    flagged = np.flatnonzero(mask)
    if len(flagged) == 0:
        return
    layers = np.searchsorted(offsets, flagged, side="right") - 1
    boundaries = np.flatnonzero(np.diff(layers)) + 1
    for chunk, in_layer in zip(
        np.split(flagged, boundaries), np.split(layers, boundaries), strict=True
    ):
        layer = int(in_layer[0])
        yield layer, chunk - offsets[layer]
