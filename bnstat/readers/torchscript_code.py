"""Module constants of TorchScript archives, read from their code without running it.

A scripted module (`torch.jit.script`) keeps `eps` and `momentum` of a BatchNorm module
as `Final` class constants in the archive's `code/__torch__/...py` files, not in the
pickled state. A traced one (`torch.jit.trace`) has no such constants: its `forward`
calls `torch.batch_norm(...)` (or `torch.instance_norm`) with momentum and eps written
in as numbers, the values they had when it was traced (in eval mode a `momentum=None`
layer records 0.0). This module reads both as text, never executing them, so that the
rules use a TorchScript model's real epsilon.
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


# A traced normalization call whose arguments are names and literals, on one line:
# torch.batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn_enabled)
_NORM_CALL = re.compile(r"torch\.(?:batch_norm|instance_norm)\(([^()\n]*)\)")
_MOMENTUM, _EPS, _NORM_ARGUMENTS = 6, 7, 9


def _traced_constants(body: str) -> dict[str, str]:
    """eps and momentum of the one normalization call in a traced class's code, if any."""
    calls = _NORM_CALL.findall(body)
    if len(calls) != 1:
        return {}  # none, or a class that normalizes twice: no module-level constants
    arguments = [argument.strip() for argument in calls[0].split(",")]
    if len(arguments) != _NORM_ARGUMENTS:
        return {}
    return {"eps": arguments[_EPS], "momentum": arguments[_MOMENTUM]}


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
        body = source[start:end]
        constants = dict(_CONSTANT.findall(body)) or _traced_constants(body)
        if "eps" in constants:
            found[f"{module}.{name}"] = ModuleConstants(
                kind=name,
                eps=_number(constants["eps"]),
                momentum=_number(constants.get("momentum", "None")),
            )
    return found
