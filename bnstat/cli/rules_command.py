"""`bnstat rules [CODE]`: the rule table, or one rule explained."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat.cli.app import DebugOpt, command, display
from bnstat.cli.report_options import ConfigOpt, RuleFlags, ThresholdOpt
from bnstat.errors import UsageError
from bnstat.formats import RulesFormat
from bnstat.report.verdict import Result

if TYPE_CHECKING:
    from bnstat.rules.listing import RuleListing
    from bnstat.settings import Settings

CodeArg = Annotated[
    str | None, typer.Argument(metavar="CODE", help="A rule code or name: BN004, dead-channel.")
]
RulesFormatOpt = Annotated[
    RulesFormat, typer.Option("--format", "-f", help="Plain text, markdown or JSON.")
]


@command(short_help="List the rules, or explain one.")
def rules(
    code: CodeArg = None, format: RulesFormatOpt = RulesFormat.TEXT, config: ConfigOpt = None,
    threshold: ThresholdOpt = None, debug: DebugOpt = False,
) -> Result:  # fmt: skip
    """List the rules, or explain one: what it checks, why, an example, the fix."""
    from bnstat.formats import rules_emitter

    settings = RuleFlags(config, thresholds=tuple(threshold or ())).settings()
    listing = _listing(code, settings)
    sys.stdout.write(rules_emitter(format)(listing, display(table=False)))
    return listing


def _listing(code: str | None, settings: Settings) -> RuleListing:
    """Every rule, or the one named by `code` (a code or a name)."""
    from bnstat.rules import RULES, rule_named
    from bnstat.rules.listing import RuleListing

    if code is None:
        return RuleListing(RULES, settings)
    rule = rule_named(code)
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `bnstat rules` lists them")
    return RuleListing((rule,), settings, explained=True)
