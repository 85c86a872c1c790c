"""What a rule is: a code, a name, a severity, thresholds, a check and its documentation.

Each rule lives in its own module whose docstring has the sections *What it checks*,
*Why it matters*, *Example* and *Fix*; `bnstat rules`, the README table and SARIF rule
metadata are all rendered from it. A check is a pure function from a `RuleInput` to
`Hit`s; the engine turns hits into `Finding`s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bnstat.data_fit import ChannelFit
from bnstat.layer_batch import LayerBatch
from bnstat.readers.base import CheckpointFormat
from bnstat.report.severity import Severity
from bnstat.wording import plural

SECTIONS = ("What it checks", "Why it matters", "Example", "Fix")


@dataclass(frozen=True)
class Param:
    """A rule threshold, set in `[tool.bnstat.thresholds]` or with `--threshold NAME=VALUE`."""

    name: str
    default: float
    help: str


@dataclass(frozen=True)
class DataFacts:
    """With `--data`: how each measured layer's statistics fit the data (`data_fit`)."""

    fits: Mapping[int, ChannelFit]  # by layer index
    order: tuple[int, ...]  # the measured layers' indices in execution order
    recalibrate: str  # the command line that recalibrates on the same data


@dataclass(frozen=True)
class RuleInput:
    """What a check sees: the layers, the effective thresholds and facts about the file."""

    layers: LayerBatch
    thresholds: Mapping[str, float]
    refused_globals: tuple[str, ...] = ()
    format: CheckpointFormat | None = None
    data: DataFacts | None = None
    no_model: str | None = None  # what a file that holds no model holds instead


@dataclass(frozen=True)
class Hit:
    """A check's raw result: a layer index (None: whole checkpoint), channels, a message."""

    layer: int | None
    message: str
    channels: tuple[int, ...] = ()
    fix: str | None = None  # instead of the rule's own, when the hit knows better


Check = Callable[[RuleInput], Iterable[Hit]]


@dataclass(frozen=True)
class RuleDoc:
    summary: str
    what: str
    why: str
    example: str
    fix: str

    @property
    def short_fix(self) -> str:
        """The first sentence of the Fix section, for messages and tables."""
        first = re.split(r"(?<=\.)\s", self.fix.strip(), maxsplit=1)[0]
        return " ".join(first.split())


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    check: Check
    params: tuple[Param, ...]
    doc: RuleDoc


def parse_doc(docstring: str | None, code: str) -> RuleDoc:
    """Split a rule module's docstring into its summary line and four sections."""
    text = (docstring or "").strip()
    summary, _, body = text.partition("\n")
    parts = re.split(r"^## (.+)$", body, flags=re.MULTILINE)
    sections = {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    missing = [s for s in SECTIONS if s not in sections]
    if missing:
        raise ValueError(f"rule {code} docstring lacks sections: {', '.join(missing)}")
    return RuleDoc(summary.strip(), *(sections[s] for s in SECTIONS))


def define_rule(
    docstring: str | None,
    code: str,
    name: str,
    severity: Severity,
    check: Check,
    params: Sequence[Param] = (),
) -> Rule:
    return Rule(code, name, severity, check, tuple(params), parse_doc(docstring, code))


def channel_list(channels: np.ndarray | Sequence[int], limit: int = 8) -> str:
    """`[3, 17, 21]`, or `[3, 17, ... +40 more]` for long lists."""
    items = [int(c) for c in channels]
    shown = ", ".join(str(c) for c in items[:limit])
    more = f", ... +{len(items) - limit} more" if len(items) > limit else ""
    return f"[{shown}{more}]"


def num(value: float) -> str:
    """A number as a person reads it: 4 significant digits, no noise."""
    return f"{value:.4g}"


def channel_word(n: int) -> str:
    return plural("channel", n)
