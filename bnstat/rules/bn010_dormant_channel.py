"""Channels whose shift is so negative that a following ReLU almost never lets them through.

## What it checks
Live channels (not already dead per BN004) of affine layers with
`bias + dormant-sigmas * |weight| <= 0` (default 3 sigmas). Where the file holds the
graph (TorchScript, `.pt2`, ONNX), the message says what follows the layer (a ReLU, a
smooth gate such as SiLU, a residual add), and layers that feed none of these are not
reported: a shifted output is harmless there.

## Why it matters
With accurate statistics the normalised input of a channel has mean 0 and variance 1,
so its output `weight * z + bias` is positive only when `z > -bias / |weight|`. At three
standard deviations that happens for fewer than about 0.1% of inputs (for a roughly
normal `z`): behind a ReLU the channel is practically always zero. It costs compute and
carries almost no signal; many such channels suggest dying-ReLU collapse during
training. If no ReLU follows the layer this is harmless, hence the `info` severity.

## Example
`layer4.1.bn2` with `weight[9] = 0.2` and `bias[9] = -0.9`: channel 9 is positive for
about 3 inputs in a million.

## Fix
If a ReLU follows, consider pruning these channels; to avoid them, lower the learning
rate or weight decay on BatchNorm parameters, or use a leaky activation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.readers.followers import Follower, FollowerKind
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, Param, RuleInput, channel_list, channel_word, define_rule, num
from bnstat.rules.facts import dead_channel_mask
from bnstat.wording import bound, plural

PARAMS = (Param("dormant-sigmas", 3.0, "standard deviations the bias pushes below zero"),)


def check(data: RuleInput) -> Iterator[Hit]:
    layers = data.layers
    sigmas = data.thresholds["dormant-sigmas"]
    live = layers.affine[layers.ids] & ~dead_channel_mask(layers, data.thresholds)
    dormant = live & (layers.bias + sigmas * np.abs(layers.weight) <= 0)
    for layer, channels in layers.flagged(dormant):
        consequence = _consequence(layers.followers[layer], len(channels))
        if consequence is None:
            continue
        weight = np.abs(layers.of_layer(layers.weight, layer)[channels])
        bias = layers.of_layer(layers.bias, layer)[channels]
        depths = -bias / weight
        depth = bound(num(float(depths.min())), num(float(depths.max())), "at least")
        n = len(channels)
        yield Hit(
            layer,
            f"{n} {channel_word(n)} {channel_list(channels)} {plural('is', n, 'are')} shifted "
            f"{depth} standard deviations below zero: {consequence}",
            tuple(int(c) for c in channels),
        )


def _consequence(follower: Follower | None, n: int) -> str | None:
    """What the shift does to `n` channels, given what follows the layer; None where it is
    harmless."""
    their, they = plural("its", n, "their"), plural("it", n, "they")
    if follower is None:
        return f"behind a ReLU {they} {plural('passes', n, 'pass')} fewer than ~0.1% of inputs"
    if follower.kind is FollowerKind.RELU:
        return f"a {follower.op} follows, which passes fewer than ~0.1% of {their} inputs"
    if follower.kind is FollowerKind.GATE:
        return (
            f"a {follower.op} follows, which maps all but ~0.1% of {their} inputs to values "
            "between -0.38 and 0"
        )
    if follower.kind is FollowerKind.ADD:
        return (
            f"a residual add follows: {they} {plural('pulls', n, 'pull')} the sum below zero, "
            "and whether it stays there depends on the other branch"
        )
    return None  # no gate follows: a shifted output is just an output


RULE = define_rule(__doc__, "BN010", "dormant-channel", Severity.INFO, check, PARAMS)
