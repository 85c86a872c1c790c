"""How bad a finding is, and from which severity on a run fails: the two enums every
command line option, rule and report shares (kept apart so that parsing a command line
does not load the report model)."""

from __future__ import annotations

import enum


class Severity(str, enum.Enum):
    """How bad a finding is; ordered info < warning < error."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return ("info", "warning", "error").index(self.value)


class FailOn(str, enum.Enum):
    """The lowest severity that makes a run fail (`never`: findings never fail it)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    NEVER = "never"

    def fails(self, severity: Severity) -> bool:
        return self is not FailOn.NEVER and severity.rank >= Severity(self.value).rank
