"""How far one set of BatchNorm statistics is from another, channel by channel.

A mean shift is measured in units of the new standard deviation, `|new - old| /
sqrt(new var + eps)`: what the shift does to the normalised output. A variance change is
the ratio new / old. A channel counts as changed when its mean moved by more than 1% of a
standard deviation or its variance by more than 1%. Non-finite or non-positive old values
make the change infinite: anything is a change from NaN. Used by `bnstat diff` and by the
recalibration report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANGED = 0.01


@dataclass(frozen=True)
class Drift:
    mean_shift: float  # largest |new - old| / sqrt(new var + eps)
    var_ratio_low: float  # smallest new / old variance
    var_ratio_high: float
    changed: int  # channels that moved by more than 1%


def drift(
    old_mean: np.ndarray, old_var: np.ndarray, new_mean: np.ndarray, new_var: np.ndarray, eps: float
) -> Drift:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        shift = np.abs(new_mean - old_mean) / np.sqrt(new_var + eps)
        ratio = new_var / old_var
    shift = np.where(np.isfinite(shift), shift, np.inf)
    ratio = np.where(np.isfinite(ratio) & (old_var > 0), ratio, np.inf)
    moved = (shift > CHANGED) | (np.abs(ratio - 1) > CHANGED)
    return Drift(
        mean_shift=float(shift.max(initial=0.0)),
        var_ratio_low=float(ratio.min(initial=np.inf)),
        var_ratio_high=float(ratio.max(initial=0.0)),
        changed=int(moved.sum()),
    )
