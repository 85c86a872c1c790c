"""running_var below zero in some channel.

## What it checks
Every channel of `running_var` for a value below 0.

## Why it matters
A variance cannot be negative. PyTorch never produces one, so a negative value means
the checkpoint was edited, merged or converted wrongly (a sign flip, a subtraction of two
checkpoints, a mix-up between variance and log-variance). In eval mode the channel
computes `sqrt(var + eps)` of a negative number: NaN for every input once `var < -eps`.

## Example
A model merged as `a + 0.5 * (b - a)` with the wrong sign leaves
`backbone.bn1.running_var[7] = -0.31`; every output of the model becomes NaN.

## Fix
Recalibrate the statistics (`bnstat recalibrate`) and check the tool that wrote the file:
weight averaging and merging must treat running variances as variances.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, channel_list, channel_word, define_rule, num


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    for layer, channels in layers.flagged(layers.var < 0):
        lowest = float(np.min(layers.of_layer(layers.var, layer)[channels]))
        yield Hit(
            layer,
            f"running_var < 0 in {len(channels)} {channel_word(len(channels))} "
            f"{channel_list(channels)} (lowest {num(lowest)})",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN002", "negative-variance", Severity.ERROR, check)
