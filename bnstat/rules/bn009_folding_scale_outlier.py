"""A layer whose folded scales span too wide a range for per-tensor quantization.

## What it checks
For each layer, the folding scale of every channel, `|weight| / sqrt(running_var + eps)`,
and whether the largest exceeds `fold-ratio` (default 100) times the layer's median scale.
The channels above that bound are listed.

## Why it matters
Deployment folds BatchNorm into the preceding convolution: each output filter is
multiplied by its channel's scale. With per-tensor int8 quantization one step size
covers the whole folded weight tensor, so a channel 100x larger than the others leaves
the rest with a handful of quantization levels, and the layer loses most of its
precision. Depthwise convolutions are the classic case. Per-channel quantization is
immune, hence the `info` severity.

## Example
`blocks.3.dw.bn` has a median scale of 2.1 and one channel at 640 (its running_var is
tiny): per-tensor int8 of the folded depthwise filter rounds the other channels to 0 or 1.

## Fix
Quantize that layer per channel, or clip/recalibrate the outlying channels' statistics
(`bnstat recalibrate`) if a collapsed variance caused the outlier.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.layer_arrays import layer_median
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num

PARAMS = (Param("fold-ratio", 100.0, "largest over median folded scale that is still safe"),)


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.abs(layers.weight) / np.sqrt(layers.var + layers.eps[layers.ids])
    scale = np.where(np.isfinite(scale), scale, np.nan)
    median = layer_median(scale, layers.offsets)
    with np.errstate(invalid="ignore"):
        outlier = scale > data.thresholds["fold-ratio"] * median[layers.ids]
    outlier &= (median > 0)[layers.ids]
    for layer, channels in layers.flagged(outlier):
        peak = float(np.nanmax(layers.of_layer(scale, layer)))
        yield Hit(
            layer,
            f"folded scale |weight|/sqrt(var+eps) reaches {num(peak)}, "
            f"{num(peak / median[layer])}x the layer median {num(float(median[layer]))}, in "
            f"{len(channels)} {channel_word(len(channels))} {channel_list(channels)}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN009", "folding-scale-outlier", Severity.INFO, check, PARAMS)
