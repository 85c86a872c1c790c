"""A pickle that calls functions able to run code or touch the system when loaded.

## What it checks
The globals the checkpoint's pickle references, against functions and modules that
execute code, spawn processes, import modules or reach the file system and network:
`os`, `subprocess`, `builtins.eval`/`exec`/`__import__`, `importlib`, `marshal`,
`types`, `runpy`, `socket`, `ctypes`, `timeit`, `pydoc` and the like. `builtins.getattr`
counts when its result is called (or handed to a call, or set as `__setstate__`), when
it looks up a dunder name (`__globals__`) or looks on a module or object of those, or
on anything but a class the pickle names or an object built from one; a plain
attribute of a harmless class, kept as data (protocol 2 pickles a method that way), is
only a reference (BN012). bnstat itself never calls any of them: every global outside
its allow-list becomes an inert placeholder.

## Why it matters
`torch.load(path, weights_only=False)`, the default before torch 2.6 and still common in
training code, calls whatever the pickle names. A checkpoint that references these
functions runs that code on every machine that loads it: it is either malicious or was
produced by something that should never write checkpoints. A CI gate must stop it.

## Example
A `model.pt` downloaded from a file share whose `data.pkl` calls
`os.system("curl ... | sh")` from a `__reduce__` gadget while still holding valid weights.

## Fix
Do not load the file with `weights_only=False`; re-export the weights from a trusted
source as safetensors, or load it with `torch.load(weights_only=True)`, which refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnstat.readers.pickle_risk import executes_code
from bnstat.report.severity import Severity
from bnstat.rules.base import Hit, RuleInput, define_rule
from bnstat.wording import plural


def check(data: RuleInput) -> Iterator[Hit]:
    dangerous = [g for g in data.refused_globals if executes_code(g)]
    if dangerous:
        yield Hit(
            None,
            f"the pickle calls {', '.join(sorted(dangerous))}: loading it with "
            f"torch.load(weights_only=False) would run {plural('it', len(dangerous), 'them')} "
            "(bnstat did not)",
        )


RULE = define_rule(__doc__, "BN011", "code-in-pickle", Severity.ERROR, check)
