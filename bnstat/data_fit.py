"""How well a layer's stored statistics describe what it receives on real data.

With the stored statistics in eval mode, a layer normalises its input x by
`(x - running_mean) / sqrt(running_var + eps)`. Measured over a data set, per channel:

- the mean shift, `|measured_mean - running_mean| / sqrt(running_var + eps)`: how far,
  in output standard deviations, the normalised output is off centre;
- the variance ratio, `(measured_var + eps) / (running_var + eps)`: the square of the
  factor by which the normalised output is wider (above 1) or narrower (below 1) than
  meant; 1 is a match, and both directions read as distance.

A channel is *off* when its difference is both meaningful and beyond sampling noise
(BATCHNORM.md, "Stored statistics against data"): a mean shift of at least
`data-mean-shift` output standard deviations and more than `data-sigmas` standard errors
of a mean over the samples, `sqrt(ratio / samples)`; or a variance ratio beyond
`data-var-ratio` either way whose logarithm is more than `data-sigmas` standard errors of
a log variance, `sqrt(2 / (samples - 1))`. The standard errors count samples, not values:
the pixels of one image are far from independent, so this errs towards quiet.

Torch-free: it works on the float64 moments the data pass measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnstat.report.inspection import LayerData


@dataclass(frozen=True, eq=False)
class Measured:
    """One layer's input over the data set, in eval mode with the stored statistics."""

    mean: np.ndarray  # float64, per channel
    var: np.ndarray  # unbiased
    samples: int  # calibration samples that reached the layer


@dataclass(frozen=True, eq=False)
class ChannelFit:
    """Per channel: the mean shift, the variance ratio and whether the channel is off."""

    mean_shift: np.ndarray
    var_ratio: np.ndarray
    off: np.ndarray  # bool

    @property
    def channels_off(self) -> int:
        return int(self.off.sum())


def fit(
    measured: Measured,
    stored_mean: np.ndarray,
    stored_var: np.ndarray,
    eps: float,
    thresholds: dict[str, float] | Any,
) -> ChannelFit:
    """Compare a layer's measured input with its stored statistics (module docstring)."""
    with np.errstate(all="ignore"):
        scale = np.sqrt(np.maximum(stored_var, 0) + eps)
        shift = np.abs(measured.mean - stored_mean) / scale
        ratio = (measured.var + eps) / (np.maximum(stored_var, 0) + eps)
        sigmas = thresholds["data-sigmas"]
        samples = max(measured.samples, 1)
        mean_noise = sigmas * np.sqrt(ratio / samples)
        log_noise = sigmas * np.sqrt(2 / (samples - 1)) if samples > 1 else np.inf
        shifted = (shift >= thresholds["data-mean-shift"]) & (shift > mean_noise)
        log_ratio = np.abs(np.log(ratio))
        widened = (log_ratio >= np.log(thresholds["data-var-ratio"])) & (log_ratio > log_noise)
        off = np.nan_to_num(shifted | widened, nan=False).astype(bool)
        off |= ~np.isfinite(shift) | ~np.isfinite(ratio)  # non-finite inputs or statistics
    return ChannelFit(shift, ratio, off)


def _finite(values: np.ndarray, pick: Any) -> float | None:
    finite = values[np.isfinite(values)]
    return float(pick(finite)) if finite.size else None


def layer_data(fit_: ChannelFit, samples: int, first_divergent: bool) -> LayerData:
    """The per-layer summary the reports show."""
    return LayerData(
        samples=samples,
        mean_shift_max=_finite(fit_.mean_shift, np.max),
        mean_shift_median=_finite(fit_.mean_shift, np.median),
        var_ratio_max=_finite(fit_.var_ratio, np.max),
        var_ratio_min=_finite(fit_.var_ratio, np.min),
        channels_off=fit_.channels_off,
        first_divergent=first_divergent,
    )
