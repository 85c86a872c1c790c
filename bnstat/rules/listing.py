"""What `bnstat rules` shows: some rules, and the settings that say which are on and at
what thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.report.verdict import Verdict
from bnstat.rules.base import Rule
from bnstat.settings import Settings


@dataclass(frozen=True)
class RuleListing:
    """The rules to show and the settings in effect; `explained` when one rule was asked
    for, to be shown in full."""

    rules: tuple[Rule, ...]
    settings: Settings
    explained: bool = False

    @property
    def verdict(self) -> Verdict:
        return Verdict.PASSED
