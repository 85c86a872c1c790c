"""A checkpoint without any BatchNorm running statistics.

## What it checks
Whether any key prefix of the checkpoint holds both `running_mean` and `running_var`;
in an ONNX model, whether the statistics were folded away: every BatchNormalization at
mean 0 and variance 1 exactly, beside scales that are not all 1; and, for a file named
on the command line that holds no model at all (an optimizer state, a scheduler's
state, training arguments, random number generator states), what it holds instead. A
folder scan skips such files and lists them.

## Why it matters
Nothing is wrong with the file, but bnstat has nothing to check: the model has no
BatchNorm, uses normalisations without running statistics (LayerNorm, GroupNorm), keeps
its statistics under other names, or had its BatchNorm folded into the convolutions for
deployment. Some converters (Keras-to-ONNX ones among them) keep the nodes but fold the
statistics into them: `scale = gamma / sqrt(var + eps)`, `bias = beta - mean * scale`,
mean 0 and variance 1. Such a model normalises correctly, and BN003 (untrained
statistics) would be a false alarm on every layer. A model whose statistics were reset
before export looks the same, which only its accuracy can tell. A CI gate that expects
BatchNorm layers should know it checked none.

## Example
An ONNX or TorchScript export produced after `torch.ao.quantization.fuse_modules`: the
BatchNorm layers no longer exist as such. A Keras model converted to ONNX: every
BatchNormalization reads zeros and ones.

## Fix
Nothing to fix if the model has no BatchNorm by design, or if its statistics were folded
on export; otherwise point bnstat at the unfused checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule
from bnstat.rules.facts import statistics_folded

NO_MODEL_FIX = (
    "Nothing to fix: a trainer writes such files beside the model's weights; leave them out "
    "of the check with --exclude (or exclude in [tool.bnstat]) if they are in the way."
)


def check(data: RuleInput) -> Iterator[Hit]:
    if data.no_model is not None:
        yield Hit(None, f"no model to check: {data.no_model}", fix=NO_MODEL_FIX)
    elif data.layers.size == 0:
        yield Hit(None, "no BatchNorm layers (no running_mean/running_var pairs) were found")
    elif statistics_folded(data):
        yield Hit(
            None,
            f"all {data.layers.size} BatchNormalization layers read mean 0 and variance 1 "
            "beside trained scales: the exporter folded the statistics into scale and bias "
            "(Keras-to-ONNX converters do), so there are no running statistics to check; "
            "statistics reset before export would look the same, which the model's "
            "accuracy tells",
        )


RULE = define_rule(__doc__, "BN013", "no-batchnorm", Severity.INFO, check)
