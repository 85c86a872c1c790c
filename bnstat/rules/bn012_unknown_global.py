"""A pickle that references classes or functions outside the safe allow-list.

## What it checks
The globals the checkpoint's pickle references that are not plain containers or tensor
rebuilders and are not in BN011's list: custom classes, optimizer or scheduler objects,
`argparse.Namespace`, Lightning hyper-parameter containers, whole pickled `nn.Module`s.
bnstat reads the tensors around them without creating them.

## Why it matters
`torch.load(weights_only=True)`, the default since torch 2.6, refuses such a file unless
every global is allow-listed with `torch.serialization.add_safe_globals`, and loading it
with `weights_only=False` executes the named classes' code. A checkpoint meant for
deployment should hold tensors and plain data only; one that pickles whole modules also
breaks as soon as the source code that defined them moves.

## Example
A Lightning `.ckpt` whose `hyper_parameters` is an `argparse.Namespace`: inspection works,
but `torch.load(path, weights_only=True)` raises an `UnpicklingError`.

## Fix
Save `model.state_dict()` (or safetensors) for deployment, with hyper-parameters as
plain dicts, strings and numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnstat.readers.pickle_risk import executes_code
from bnstat.report import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule
from bnstat.wording import counted

SHOWN = 6


def check(data: RuleInput) -> Iterator[Hit]:
    unknown = sorted(g for g in data.refused_globals if not executes_code(g))
    if unknown:
        listed = ", ".join(unknown[:SHOWN]) + (
            f", +{len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        )
        yield Hit(
            None,
            f"the pickle references {counted(len(unknown), 'global')} outside the allow-list, "
            f"read as inert placeholders: {listed}; torch.load(weights_only=True) would refuse it",
        )


RULE = define_rule(__doc__, "BN012", "unknown-global", Severity.INFO, check)
