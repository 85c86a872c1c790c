"""`drift`: how far one set of statistics is from another, against the formulas written
out channel by channel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnstat.drift import CHANGED, drift


def test_shift_ratio_and_changed_channels_follow_the_definitions():
    rng = np.random.default_rng(0)
    old_mean, old_var = rng.normal(size=50), rng.uniform(0.1, 2, 50)
    new_mean = old_mean + rng.normal(0, 0.02, 50)
    new_var = old_var * rng.uniform(0.97, 1.03, 50)
    eps = 1e-3
    got = drift(old_mean, old_var, new_mean, new_var, eps)
    shifts = [
        abs(n - o) / math.sqrt(v + eps) for n, o, v in zip(new_mean, old_mean, new_var, strict=True)
    ]
    ratios = [n / o for n, o in zip(new_var, old_var, strict=True)]
    moved = sum(
        1 for s, r in zip(shifts, ratios, strict=True) if s > CHANGED or abs(r - 1) > CHANGED
    )
    assert got.mean_shift == pytest.approx(max(shifts), rel=1e-12)
    assert (got.var_ratio_low, got.var_ratio_high) == pytest.approx((min(ratios), max(ratios)))
    assert got.changed == moved and 0 < moved < 50


def test_identical_statistics_have_not_moved():
    mean, var = np.array([0.5, -1.0]), np.array([1.0, 0.25])
    got = drift(mean, var, mean.copy(), var.copy(), 1e-5)
    assert (got.mean_shift, got.var_ratio_low, got.var_ratio_high, got.changed) == (0, 1, 1, 0)


def test_anything_is_a_change_from_nan_or_a_non_positive_variance():
    old_mean, old_var = np.array([np.nan, 0.0, 0.0]), np.array([1.0, 0.0, -1.0])
    got = drift(old_mean, old_var, np.zeros(3), np.ones(3), 1e-5)
    assert got.mean_shift == np.inf and got.var_ratio_high == np.inf and got.changed == 3
