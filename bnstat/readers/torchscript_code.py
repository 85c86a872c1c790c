"""Module constants of TorchScript archives, read from their code without running it.

TorchScript keeps `eps` and `momentum` of a BatchNorm module as `Final` class constants in
the archive's `code/__torch__/...py` files, not in the pickled state. This module reads
those declarations as text (never executes them) so that a scripted model's real epsilon
is used by the rules.
"""

from __future__ import annotations

import re

from bnstat.readers.base import ModuleConstants

_CLASS = re.compile(r"^class (\w+)\(", re.MULTILINE)
# Indentation is matched as spaces and tabs only: `\s+` at a line start also crosses
# newlines, and a member of blank lines then takes quadratic time to search.
_CONSTANT = re.compile(r"^[ \t]+(eps|momentum) : Final\[\w+\] = (\S+)[ \t]*$", re.MULTILINE)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "None" (cumulative average momentum) or an expression


def class_constants(member: str, source: str) -> dict[str, ModuleConstants]:
    """Map each class defined in a code member to its eps/momentum constants.

    `member` is the archive path after the root folder, e.g.
    `code/__torch__/torch/nn/modules/batchnorm/___torch_mangle_0.py`.
    """
    module = member.removeprefix("code/").removesuffix(".py").replace("/", ".")
    found: dict[str, ModuleConstants] = {}
    starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(source)]
    for index, (start, name) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(source)
        constants = dict(_CONSTANT.findall(source[start:end]))
        if "eps" in constants:
            found[f"{module}.{name}"] = ModuleConstants(
                kind=name,
                eps=_number(constants["eps"]),
                momentum=_number(constants.get("momentum", "None")),
            )
    return found
