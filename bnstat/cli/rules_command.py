"""`bnstat rules [CODE]`: the rule table, or one rule explained."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bnstat.cli.app import DebugOpt, command, display
from bnstat.cli.report_options import ConfigOpt, RuleFlags, ThresholdOpt
from bnstat.formats import RulesFormat
from bnstat.report.verdict import Result

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
    from bnstat.report.rules import rule_listing

    settings = RuleFlags(config, thresholds=tuple(threshold or ())).settings()
    listing = rule_listing(code, settings)
    sys.stdout.write(rules_emitter(format)(listing, display(table=False)))
    return listing
