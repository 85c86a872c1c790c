"""NaN or infinity in a layer's running statistics or affine parameters.

## What it checks
Every channel of `running_mean`, `running_var`, `weight` and `bias` for a value that is
NaN, +inf or -inf.

## Why it matters
In eval mode each channel computes `(x - mean) / sqrt(var + eps) * weight + bias`; one
non-finite number makes that channel's output NaN or infinite for every input, and the
next layer spreads it to every channel it reads. This is the classic "eval() returns NaN"
failure after a training run diverged, an overflowing float16 export or a bad merge.

## Example
`layer3.1.bn2.running_var[12] = inf` after mixed-precision training overflowed: every
prediction of the model is NaN in eval mode, while train mode still looks fine.

## Fix
Recalibrate the statistics on representative data (`bnstat recalibrate`); if `weight` or
`bias` are non-finite the weights themselves are broken and must come from an earlier
checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, channel_list, channel_word, define_rule
from bnstat.rules.facts import FIELD_NAMES, QUANTITIES
from bnstat.wording import plural


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    bad = {q: ~np.isfinite(getattr(layers, q)) for q in QUANTITIES}
    for layer, channels in layers.flagged(np.logical_or.reduce(list(bad.values()))):
        where = [
            f"{FIELD_NAMES[q]} {channel_list(np.flatnonzero(layers.of_layer(bad[q], layer)))}"
            for q in QUANTITIES
            if layers.of_layer(bad[q], layer).any()
        ]
        yield Hit(
            layer,
            f"{len(channels)} {channel_word(len(channels))} "
            f"{plural('holds', len(channels), 'hold')} NaN or inf: {'; '.join(where)}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN001", "non-finite-stats", Severity.ERROR, check)
