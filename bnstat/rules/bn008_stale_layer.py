"""A layer that counted far fewer training batches than the rest of the checkpoint.

## What it checks
Layers whose `num_batches_tracked` is above 0 but below `stale-ratio` (default 0.5)
times the median `num_batches_tracked` of the checkpoint's layers. Layers that never
counted a batch are reported by BN003 instead.

## Why it matters
In an ordinary training run every BatchNorm layer runs on every batch, so all layers
carry the same count (or a multiple of it, for layers called twice per step). A layer
that counted less than half as many batches was frozen (put in eval mode) for most of
training, or added later. Its statistics then describe the network as it was when the
layer stopped counting, not the final weights upstream of it, and eval-mode outputs
drift from what training optimised.

## Example
A detector trained with `backbone.layer1.*.bn*` frozen after the first 1,000 of 90,000
iterations: those layers report 1,000 against a typical 90,000.

## Fix
If the freezing was deliberate and the upstream weights were frozen too, ignore the rule
for those layers; otherwise recalibrate the statistics (`bnstat recalibrate`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, define_rule, num

PARAMS = (
    Param("stale-ratio", 0.5, "fraction of the median batch count below which a layer is stale"),
)


def check(data: RuleInput) -> Iterator[Hit]:
    counts = data.layers.count
    counted = counts[np.isfinite(counts) & (counts > 0)]
    if len(counted) < 2:
        return
    typical = float(np.median(counted))
    ratio = data.thresholds["stale-ratio"]
    for layer in np.flatnonzero((counts > 0) & (counts < ratio * typical)):
        yield Hit(
            int(layer),
            f"num_batches_tracked is {int(counts[layer])} against a typical {num(typical)} "
            f"({num(100 * counts[layer] / typical)}%): the layer missed most of training",
        )


RULE = define_rule(__doc__, "BN008", "stale-layer", Severity.WARNING, check, PARAMS)
