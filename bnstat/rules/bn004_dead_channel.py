"""Channels whose scale (gamma, `weight`) is zero or negligible: their output is a constant.

## What it checks
Affine layers, channel by channel: `|weight| <= dead-weight-abs` (default 1e-6), or
`|weight|` below `dead-weight-rel` (default 1e-3) times the median `|weight|` of the layer.

## Why it matters
In eval mode the channel outputs `weight * normalised_input + bias`; with `weight` near
zero that is the constant `bias` whatever the input. If a ReLU follows and `bias <= 0` the
channel is always zero; if `bias > 0` it is a fixed offset. Either way the channel carries
no information and the convolution feeding it is wasted compute. Where the file holds
the graph (TorchScript, `.pt2`, ONNX) the message says what actually follows: a ReLU
(always zero for `bias <= 0`), a smooth gate such as SiLU, a residual add, or nothing
that gates it (a constant). Strong weight decay,
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

from collections.abc import Iterator

import numpy as np

from bnstat.readers.followers import Follower, FollowerKind
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.rules.facts import dead_channel_mask
from bnstat.wording import bound, plural

PARAMS = (
    Param("dead-weight-abs", 1e-6, "|weight| at or below this is dead"),
    Param("dead-weight-rel", 1e-3, "|weight| below this fraction of the layer median is dead"),
)


def _behaviour(channels: np.ndarray, bias: np.ndarray, follower: Follower | None) -> str:
    """What the dead channels output: by what follows them when the graph says, else
    split by the sign of their bias."""
    if follower is None:
        parts = []
        if (bias <= 0).any():
            zero = channel_list(channels[bias <= 0])
            parts.append(f"bias <= 0 in {zero}: always zero behind a ReLU")
        if (bias > 0).any():
            parts.append(f"bias > 0 in {channel_list(channels[bias > 0])}: a constant offset")
        return "; ".join(parts)
    op, they = follower.op, plural("it is", len(channels), "they are")
    if follower.kind is FollowerKind.RELU:
        parts = []
        if (bias <= 0).any():
            parts.append(f"always zero in {channel_list(channels[bias <= 0])} (bias <= 0)")
        if (bias > 0).any():
            parts.append(f"a constant in {channel_list(channels[bias > 0])} (bias > 0)")
        return f"a {op} follows, so {they} {' and '.join(parts)}"
    if follower.kind is FollowerKind.GATE:
        return f"a {op} follows, so {they} the constant {op}(bias)"
    if follower.kind is FollowerKind.ADD:
        return f"a residual add follows, so {they} a constant offset in the sum"
    if follower.kind is FollowerKind.OUTPUT:
        outputs = plural("it as it is", len(channels), "them as they are")
        return f"the model outputs {outputs}: a constant"
    return f"{op} follows and receives {plural('it', len(channels), 'them')} as a constant"


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
            f"{_behaviour(channels, bias, layers.followers[layer])}",
            tuple(int(c) for c in channels),
        )


RULE = define_rule(__doc__, "BN004", "dead-channel", Severity.WARNING, check, PARAMS)
