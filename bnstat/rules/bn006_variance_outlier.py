"""Channels whose running variance is orders of magnitude away from the rest of the layer.

## What it checks
Within each layer, channels whose `log10(running_var)` differs from the layer's median
`log10(running_var)` by more than `outlier-decades` (default 3, a factor of 1000).
Channels already reported as collapsed (BN005) and non-finite values are left out.

## Why it matters
Channels of one layer see inputs produced by the same kind of filters, so their
variances usually sit within a decade or two of each other. A channel a thousand times
wider or narrower than its neighbours points to a filter that exploded or died, to
statistics gathered on a different input distribution, or to an input that was never
normalised. It is information, not necessarily a defect, hence the `info` severity.

## Example
`stem.bn.running_var` has a median of 0.4 and `running_var[3] = 2.1e3` because input
channel 3 was fed in 0..255 instead of 0..1.

## Fix
Look at the filter feeding the channel and at the input preprocessing; if the
statistics are stale, recalibrate them (`bnstat recalibrate`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.layer_arrays import layer_median
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.wording import span

PARAMS = (Param("outlier-decades", 3.0, "distance from the layer median in powers of ten"),)


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    usable = np.isfinite(layers.var) & (layers.var > data.thresholds["collapsed-var"])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_var = np.where(usable, np.log10(layers.var), np.nan)
    median = layer_median(log_var, layers.offsets)
    distance = np.abs(log_var - median[layers.ids])
    outlier = usable & (distance > data.thresholds["outlier-decades"])
    for layer, channels in layers.flagged(outlier):
        var = layers.of_layer(layers.var, layer)[channels]
        yield Hit(
            layer,
            f"running_var of {len(channels)} {channel_word(len(channels))} "
            f"{channel_list(channels)} is {span(num(float(var.min())), num(float(var.max())))}, "
            f"more than {num(data.thresholds['outlier-decades'])} decades from the layer "
            f"median {num(float(10 ** median[layer]))}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN006", "variance-outlier", Severity.INFO, check, PARAMS)
