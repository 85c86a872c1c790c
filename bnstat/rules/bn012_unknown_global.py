"""A pickle that references classes or functions outside the safe allow-list.

## What it checks
The globals the checkpoint's pickle references that are not plain containers or tensor
rebuilders and are not in BN011's list: custom classes, optimizer or scheduler objects,
`argparse.Namespace`, Lightning hyper-parameter containers, whole pickled `nn.Module`s,
methods kept as attributes (`getattr(<class>, "forward")`, named
`pkg.Class.forward (through builtins.getattr)`), and `torch.storage._load_from_bytes`,
through which a plain `pickle.dump` stores tensors. bnstat reads the tensors around them
without creating them. torch's own `torch.nn` module classes are counted as one group
(their presence means a whole model was pickled); every other global is named.

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

from collections.abc import Iterator, Sequence

from bnstat.readers.pickle_risk import executes_code
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule

SHOWN = 6
SHOWN_CLASSES = 4
TORCH_MODULES = "torch.nn."  # torch's own module classes: what a whole pickled model names


def _listed(names: Sequence[str], shown: int) -> str:
    more = f", +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _torch_classes(names: Sequence[str]) -> str:
    """`11 torch.nn classes (BatchNorm2d, Conv2d, ..., +7 more)`: short names, grouped."""
    short = sorted({name.rsplit(".", 1)[-1] for name in names})
    word = "class" if len(names) == 1 else "classes"
    return f"{len(names)} torch.nn {word} ({_listed(short, SHOWN_CLASSES)})"


def check(data: RuleInput) -> Iterator[Hit]:
    unknown = sorted(g for g in data.refused_globals if not executes_code(g))
    if not unknown:
        return
    torch_classes = [g for g in unknown if g.startswith(TORCH_MODULES)]
    others = [g for g in unknown if not g.startswith(TORCH_MODULES)]
    named = [_listed(others, SHOWN)] if others else []
    if torch_classes:
        named.append(_torch_classes(torch_classes))
    what = "this file, a whole pickled model" if torch_classes else "this file"
    yield Hit(
        None,
        f"torch.load(weights_only=True) would refuse {what}: its pickle names "
        f"{' and '.join(named)}, outside the allow-list (read here without running them)",
    )


RULE = define_rule(__doc__, "BN012", "unknown-global", Severity.INFO, check)
