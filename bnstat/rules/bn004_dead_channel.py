"""Channels whose scale (gamma, `weight`) is zero or negligible: their output is a constant.

## What it checks
Affine layers, channel by channel: `|weight| <= dead-weight-abs` (default 1e-6), or
`|weight|` below `dead-weight-rel` (default 1e-3) times the median `|weight|` of the layer.

## Why it matters
In eval mode the channel outputs `weight * normalised_input + bias`; with `weight` near
zero that is the constant `bias` whatever the input. If a ReLU follows and `bias <= 0` the
channel is always zero; if `bias > 0` it is a fixed offset. Either way the channel carries
no information and the convolution feeding it is wasted compute. Strong weight decay,
L1 sparsity on gamma (network slimming) and pruning produce such channels on purpose;
anywhere else they are a sign of collapse during training.

## Example
`layer2.0.bn1.weight[5] = 3e-9` in a layer whose median |weight| is 0.8: channel 5 always
outputs `bias[5]`.

## Fix
If the channels were pruned on purpose, remove them from the architecture (or ignore this
rule for that layer); otherwise check the training (too much weight decay on BatchNorm
parameters, a learning rate that made gamma collapse) and retrain or fine-tune.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from bnstat.layer_batch import LayerBatch
from bnstat.report import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.segments import segment_median
from bnstat.wording import bound, plural

PARAMS = (
    Param("dead-weight-abs", 1e-6, "|weight| at or below this is dead"),
    Param("dead-weight-rel", 1e-3, "|weight| below this fraction of the layer median is dead"),
)


def dead_channel_mask(layers: LayerBatch, thresholds: Mapping[str, float]) -> np.ndarray:
    """Channels whose |weight| is negligible in absolute terms or next to their layer."""
    magnitude = np.abs(layers.weight)
    median = segment_median(magnitude, layers.offsets)[layers.ids]
    dead: np.ndarray = (magnitude <= thresholds["dead-weight-abs"]) | (
        magnitude < thresholds["dead-weight-rel"] * median
    )
    dead &= layers.affine[layers.ids]
    return dead


def _behaviour(channels: np.ndarray, bias: np.ndarray) -> str:
    """What the dead channels output, split by the sign of their bias."""
    parts = []
    if (bias <= 0).any():
        parts.append(f"bias <= 0 in {channel_list(channels[bias <= 0])}: always zero behind a ReLU")
    if (bias > 0).any():
        parts.append(f"bias > 0 in {channel_list(channels[bias > 0])}: a constant offset")
    return "; ".join(parts)


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    for layer, channels in layers.flagged(dead_channel_mask(layers, data.thresholds)):
        weight = np.abs(layers.of_layer(layers.weight, layer))
        bias = layers.of_layer(layers.bias, layer)[channels]
        low, high = num(float(weight[channels].min())), num(float(weight[channels].max()))
        yield Hit(
            layer,
            f"{len(channels)} dead {channel_word(len(channels))} {channel_list(channels)} "
            f"(|weight| {bound(high, low, 'at most')}, layer median "
            f"{num(float(np.median(weight)))}) "
            f"{plural('outputs its', len(channels), 'output their')} bias whatever the input: "
            f"{_behaviour(channels, bias)}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN004", "dead-channel", Severity.WARNING, check, PARAMS)
