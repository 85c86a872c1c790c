"""Statistics that do not survive a cast to float16.

## What it checks
Every channel of `running_mean`, `running_var`, `weight` and `bias` that becomes infinite
when cast to float16 (|value| beyond 65504), and every `running_var` that flushes to zero
in float16 (below about 3e-8) while being larger than the layer's eps, so that the flush
changes the normalisation. Checkpoints already stored in float16 cannot hold such values
(they would be reported by BN001), so this concerns exports of float32/64 checkpoints.

## Why it matters
Half-precision export (`model.half()`, TensorRT/ONNX fp16, mixed-precision inference)
casts the statistics to float16. A variance of 1e5, typical of a first layer fed with raw
0..255 pixels, becomes inf, `sqrt(inf)` normalises the channel to zero, and a mean
beyond the range turns the whole channel into NaN. bfloat16 keeps the range and is not
affected.

## Example
`conv1.bn.running_var[0] = 1.3e5` in float32: after `model.half()` the channel outputs
`bias` for every image and accuracy drops.

## Fix
Keep the affected layers in float32 in the export, normalise the model's input so the
first layers see values near unit scale, or fold the BatchNorm into the preceding
convolution in float32 before casting.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.rules.facts import FIELD_NAMES, QUANTITIES


def _as_half(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        return values.astype(np.float16)


def _overflows(values: np.ndarray) -> np.ndarray:
    overflow: np.ndarray = np.isfinite(values) & np.isinf(_as_half(values))
    return overflow


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    overflow = {q: _overflows(getattr(layers, q)) for q in QUANTITIES}
    flushed = (_as_half(layers.var) == 0) & (layers.var > layers.eps[layers.ids])
    any_bad = np.logical_or.reduce([*overflow.values(), flushed])
    for layer, channels in layers.flagged(any_bad):
        parts = []
        for q in QUANTITIES:
            hit = np.flatnonzero(layers.of_layer(overflow[q], layer))
            if len(hit):
                peak = float(np.max(np.abs(layers.of_layer(getattr(layers, q), layer)[hit])))
                parts.append(f"{FIELD_NAMES[q]} {channel_list(hit)} up to {num(peak)} becomes inf")
        lost = np.flatnonzero(layers.of_layer(flushed, layer))
        if len(lost):
            parts.append(f"running_var {channel_list(lost)} flushes to 0")
        yield Hit(
            layer,
            f"{len(channels)} {channel_word(len(channels))} out of float16 range: "
            f"{'; '.join(parts)}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN007", "half-precision-overflow", Severity.WARNING, check)
