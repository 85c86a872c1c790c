"""A layer whose statistics do not describe what it receives on the data it is run on.

## What it checks
With `--data`, bnstat runs the model once in eval mode with its stored statistics and
measures, for every BatchNorm layer and channel, the mean and variance of what the layer
receives. A channel is off when its mean is shifted by at least `data-mean-shift` stored
standard deviations, or its variance differs from the stored one by at least a factor
`data-var-ratio` (either way), and the difference is also more than `data-sigmas`
standard errors of the sampling noise for the number of samples (a variance ratio of 1.16
in one of 64 channels over 1,000 samples is noise; a factor of 9 is not). The first layer
in execution order with a channel off is where the problem starts; the layers after it
that are off are reported as possibly downstream of it.

## Why it matters
In eval mode a layer normalises with its stored statistics. When they do not describe
its input, every output is shifted or scaled: a mean off by 0.25 standard deviations
moves a following ReLU from firing on 50% of inputs to 60%, a variance off by a factor
1.5 makes outputs 22% wider or narrower than the weights after it were trained for. The
defaults flag differences of that size, a medium effect; healthy models measured on
held-out data of their own distribution stay far below them (0.08 standard deviations
and a factor of 1.12 at most on the sample digits model). The
error then travels: every later layer receives a distorted input, so its own statistics
look wrong too even when they are not. This is the "fine in train(), broken in eval()"
failure, and the reason a model degrades on a new input domain.

## Example
`stats_reset.safetensors` run on its own training images: every layer stores mean 0 and
variance 1, `stem.bn` receives variances near 0.02, so every channel is off there first.
A checkpoint whose `block2.bn1.running_var` was multiplied by 9: `block2.bn1` is the
first layer off, the layers after it downstream.

## Fix
Recalibrate the statistics on this data: `bnstat recalibrate` with the same model and
data options (the finding gives the command line). If the data is a new input domain the
model must serve, recalibrate on data of that domain; if it is not, check the input
pipeline (normalisation, channel order, value range) before the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, define_rule
from bnstat.wording import counted, span


def _short(value: float) -> str:
    return f"{value:.3g}"


def _summary(fit_shift: np.ndarray, fit_ratio: np.ndarray, off: np.ndarray) -> str:
    shift = fit_shift[off & np.isfinite(fit_shift)]
    ratio = fit_ratio[off & np.isfinite(fit_ratio)]
    parts = []
    if shift.size:
        parts.append(f"mean shifted by up to {_short(float(shift.max()))} std")
    if ratio.size:
        low, high = _short(float(ratio.min())), _short(float(ratio.max()))
        parts.append(f"variance ratio {span(low, high, ' to ')}")
    return ", ".join(parts) or "non-finite values"


def check(data: RuleInput) -> Iterator[Hit]:
    if data.data is None:
        return
    facts = data.data
    first: str | None = None
    for layer in facts.order:
        fit = facts.fits[layer]
        if not fit.channels_off:
            continue
        where = (
            "the first layer off in execution order: the problem starts here"
            if first is None
            else f"possibly downstream of {first}, the first layer off"
        )
        yield Hit(
            layer,
            f"the statistics do not fit the data in {fit.channels_off} of "
            f"{counted(len(fit.off), 'channel')} "
            f"({_summary(fit.mean_shift, fit.var_ratio, fit.off)}); {where}",
            tuple(int(c) for c in np.flatnonzero(fit.off)),
            fix=f"recalibrate on this data: {facts.recalibrate}",
        )
        first = first or data.layers.names[layer]


RULE = define_rule(
    __doc__,
    "BN014",
    "stats-data-mismatch",
    Severity.WARNING,
    check,
    (
        Param("data-mean-shift", 0.25, "smallest mean shift that counts, in stored std"),
        Param("data-var-ratio", 1.5, "smallest variance factor that counts, either way"),
        Param("data-sigmas", 5.0, "standard errors of sampling noise a difference must exceed"),
    ),
)
