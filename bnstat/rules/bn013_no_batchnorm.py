"""A checkpoint without any BatchNorm running statistics.

## What it checks
Whether any key prefix of the checkpoint holds both `running_mean` and `running_var`.

## Why it matters
Nothing is wrong with the file, but bnstat has nothing to check: the model has no
BatchNorm, uses normalisations without running statistics (LayerNorm, GroupNorm), keeps
its statistics under other names, or had its BatchNorm folded into the convolutions for
deployment. A CI gate that expects BatchNorm layers should know it checked none.

## Example
An ONNX or TorchScript export produced after `torch.ao.quantization.fuse_modules`: the
BatchNorm layers no longer exist as such.

## Fix
Nothing to fix if the model has no BatchNorm by design; otherwise point bnstat at the
unfused checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnstat.report import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule


def check(data: RuleInput) -> Iterator[Hit]:
    if data.layers.size == 0:
        yield Hit(None, "no BatchNorm layers (no running_mean/running_var pairs) were found")


RULE = define_rule(__doc__, "BN013", "no-batchnorm", Severity.INFO, check)
