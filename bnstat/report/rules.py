"""What `bnstat rules` shows: the rule table, or one rule explained, with the thresholds
in effect."""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.errors import UsageError
from bnstat.report.verdict import Verdict
from bnstat.rules import RULES, rule_named
from bnstat.rules.base import Rule
from bnstat.settings import Settings


@dataclass(frozen=True)
class RuleListing:
    """The rules to show and the settings that say which are on and at what thresholds;
    `explained` when one rule was asked for, to be shown in full."""

    rules: tuple[Rule, ...]
    settings: Settings
    explained: bool = False

    @property
    def verdict(self) -> Verdict:
        return Verdict.PASSED


def rule_listing(code: str | None, settings: Settings) -> RuleListing:
    """Every rule, or the one named by `code` (a code or a name); a `UsageError` for an
    unknown one."""
    if code is None:
        return RuleListing(RULES, settings)
    rule = rule_named(code)
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `bnstat rules` lists them")
    return RuleListing((rule,), settings, explained=True)
