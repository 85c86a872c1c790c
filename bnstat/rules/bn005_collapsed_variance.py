"""Channels whose running variance is (almost) zero: their input never varied in training.

## What it checks
Every channel with `0 <= running_var <= collapsed-var` (default 1e-8).

## Why it matters
A variance that small means the channel's input was constant over the training data,
usually because the layer before it died (a ReLU that never fires, a pruned filter). At
inference the channel divides any deviation by `sqrt(var + eps)`, which is then set by
`eps` alone: a fresh input that does vary (new data, a changed upstream layer, a
quantized export) is amplified by up to `1 / sqrt(eps)` (316x with the default eps) and
the channel becomes a noise amplifier.

## Example
`features.7.bn.running_var[40] = 0.0` because conv filter 40 of `features.7` outputs a
constant: a slightly different input image produces a huge activation in channel 40.

## Fix
Find out why the input channel is constant (a dead filter upstream); prune the channel,
or recalibrate on representative data if the statistics were computed on too few samples.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.wording import bound, plural

PARAMS = (Param("collapsed-var", 1e-8, "running_var at or below this is collapsed"),)


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    collapsed = (layers.var >= 0) & (layers.var <= data.thresholds["collapsed-var"])
    for layer, channels in layers.flagged(collapsed):
        var = layers.of_layer(layers.var, layer)[channels]
        eps = float(layers.eps[layer])
        largest = bound(num(float(var.max())), num(float(var.min())), "at most")
        yield Hit(
            layer,
            f"running_var collapsed to {largest} in {len(channels)} "
            f"{channel_word(len(channels))} {channel_list(channels)} (eps {num(eps)}): any "
            f"variation of {plural('this input', len(channels), 'these inputs')} is amplified "
            f"up to {num(1 / np.sqrt(eps))}x",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN005", "collapsed-variance", Severity.WARNING, check, PARAMS)
