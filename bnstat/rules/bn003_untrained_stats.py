"""Running statistics that were never updated: still at their initial values.

## What it checks
A layer whose `running_mean` is exactly 0 and `running_var` exactly 1 in every channel
(PyTorch's initial values), or whose `num_batches_tracked` is 0 while other layers of the
same checkpoint counted batches. InstanceNorm layers update their running statistics
without counting batches; when the file records module classes (pickled modules,
TorchScript) they are exempt from the count test, in a bare state dict they cannot be
told apart from BatchNorm and may need a per-layer ignore. An ONNX model whose every
layer reads exactly 0 and 1 beside trained scales is the pattern of an exporter that
folded the statistics into scale and bias: BN013 notes it once instead.

## Why it matters
Untouched statistics mean the layer never ran in training mode: it was added after
training, its statistics were reset, or the model was only ever trained in eval mode. In
eval mode the layer then normalises with made-up numbers, so its output has the wrong
scale and offset and accuracy collapses, while train mode (which uses batch statistics)
hides the problem.

## Example
A classifier head `head.bn` added for fine-tuning but trained with the backbone in eval
mode keeps `running_mean = 0`, `running_var = 1` and `num_batches_tracked = 0`.

## Fix
Recalibrate the statistics on representative data (`bnstat recalibrate`), or train the
layer in training mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule
from bnstat.rules.facts import statistics_folded


def check(data: RuleInput) -> Iterator[Hit]:
    if statistics_folded(data):
        return
    layers = data.layers
    channels = np.diff(layers.offsets)
    off_init = np.bincount(
        layers.ids, weights=(layers.mean != 0) | (layers.var != 1), minlength=layers.size
    )
    at_init = (off_init == 0) & (channels > 0)
    others_counted = np.nanmax(layers.count, initial=0) > 0
    counts_batches = np.array(
        [not (k or "").startswith("InstanceNorm") for k in layers.kinds], dtype=bool
    )
    never_counted = (layers.count == 0) & others_counted & counts_batches
    for layer in np.flatnonzero(at_init | never_counted):
        reasons = []
        if at_init[layer]:
            reasons.append("running_mean is all 0 and running_var all 1 (initial values)")
        if never_counted[layer]:
            typical = int(np.nanmedian(layers.count[layers.count > 0]))
            reasons.append(f"num_batches_tracked is 0 while other layers counted ~{typical}")
        yield Hit(int(layer), f"statistics were never updated: {'; '.join(reasons)}")


RULE = define_rule(__doc__, "BN003", "untrained-stats", Severity.WARNING, check)
