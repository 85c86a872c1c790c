"""What a command's result says about the run, before anyone turns it into an exit code.

Every result a command returns has a `verdict`; `bnstat.cli.app` maps verdicts (and the
errors that stop a command) to exit codes, in one place.
"""

from __future__ import annotations

import enum
from typing import Protocol


class Verdict(enum.Enum):
    """PASSED: nothing reached the gate; FAILED: something did (a finding at or above
    --fail-on, a changed layer under --fail-on-change); UNREADABLE: an input could not be
    read."""

    PASSED = "passed"
    FAILED = "failed"
    UNREADABLE = "unreadable"


class Result(Protocol):
    """What every command returns."""

    @property
    def verdict(self) -> Verdict: ...
