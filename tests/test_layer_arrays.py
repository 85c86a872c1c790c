"""`layer_arrays`: per-layer statistics of a flat array, against numpy one layer at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bnstat.layer_arrays import (
    layer_ids,
    layer_median,
    layer_stats,
    runs_by_layer,
    sort_within_layers,
)


def _layers(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    values = rng.normal(0, 1, offsets[-1]) * 10.0 ** rng.integers(-200, 200, offsets[-1])
    special = rng.random(offsets[-1])
    values[special < 0.05] = np.nan
    values[(special >= 0.05) & (special < 0.08)] = np.inf
    values[(special >= 0.08) & (special < 0.1)] = -np.inf
    return values, offsets


@pytest.mark.parametrize("seed", range(3))
def test_statistics_match_numpy_per_layer(seed):
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 2, 5, 64, 1000, *rng.integers(0, 40, 50).tolist()]
    values, offsets = _layers(rng, sizes)
    with np.errstate(all="ignore"):
        stats = layer_stats(values, offsets)
    for i in range(len(sizes)):
        part = values[offsets[i] : offsets[i + 1]]
        finite = part[np.isfinite(part)]
        assert stats.finite[i] == finite.size and stats.nonfinite[i] == part.size - finite.size
        if finite.size == 0:
            assert np.isnan([stats.min[i], stats.mean[i], stats.quantiles[0.5][i]]).all()
            continue
        assert (stats.min[i], stats.max[i]) == (finite.min(), finite.max())
        scale = np.abs(finite).max()
        assert stats.mean[i] / scale == pytest.approx(np.mean(finite / scale), abs=1e-12)
        assert stats.std[i] / scale == pytest.approx(np.std(finite / scale), abs=1e-12)
        for q, got in stats.quantiles.items():
            assert got[i] == pytest.approx(np.percentile(finite, 100 * q), rel=1e-12)


def test_huge_values_do_not_overflow_the_sums():
    values = np.array([1e308, 1e308, -1e308, 1e308])
    with np.errstate(over="ignore"):  # as the pipeline runs it: quantiles between huge values
        stats = layer_stats(values, np.array([0, 4]))
    assert stats.mean[0] == pytest.approx(5e307) and np.isfinite(stats.std[0])


@pytest.mark.parametrize(
    ("layers", "lengths"),
    [(3, 4), (70_000, 4), (500, 200), (70_000, 200)],
    ids=["few-lengths", "more-than-16-bits", "many-lengths", "many-lengths-and-layers"],
)
def test_sorting_within_layers_keeps_layers_in_place(layers, lengths):
    """Few distinct lengths are sorted row-wise; many take the global sort, whose layer
    ids fit 16 bits or not."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(0, 4, layers)
    sizes[rng.choice(layers, min(lengths, layers), replace=False)] = np.arange(min(lengths, layers))
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    values = rng.normal(size=offsets[-1])
    ordered = sort_within_layers(values, offsets)
    np.testing.assert_array_equal(ordered, values[np.lexsort((values, layer_ids(offsets)))])
    for a, b in itertools.islice(itertools.pairwise(offsets), 50):
        np.testing.assert_array_equal(ordered[a:b], np.sort(values[a:b]))


def test_ids_median_and_runs():
    offsets = np.array([0, 3, 3, 7])
    np.testing.assert_array_equal(layer_ids(offsets), [0, 0, 0, 2, 2, 2, 2])
    values = np.array([3.0, 1.0, 2.0, 4.0, np.nan, 8.0, 6.0])
    np.testing.assert_array_equal(layer_median(values, offsets), [2.0, np.nan, 6.0])
    mask = np.array([False, True, True, False, False, False, True])
    runs = [(layer, list(local)) for layer, local in runs_by_layer(mask, offsets)]
    assert runs == [(0, [1, 2]), (2, [3])]
    assert list(runs_by_layer(np.zeros(7, bool), offsets)) == []
