"""Output formats: for every command, an enum of its formats and a pure emitter per member.

An emitter is a function from a command's result (`bnstat.report`) and a `Display`
(`bnstat.formats.display`) to text; only the CLI writes the text anywhere. Each
`*_emitter` function below handles its command's enum exhaustively (mypy checks it
through `unreachable`; a test calls every member) and imports the emitter's module only
when its format is asked for, so that JSON never loads rich and a table never loads the
HTML page.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from bnstat.errors import unreachable
from bnstat.formats.display import Display

if TYPE_CHECKING:
    from bnstat.report.diff import DiffReport
    from bnstat.report.inspection import Report
    from bnstat.report.recalibration import RecalibrationReport
    from bnstat.rules.listing import RuleListing

Result = TypeVar("Result")

Emitter = Callable[[Result, Display], str]


class InspectFormat(str, enum.Enum):
    """`inspect` and `check --format`."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"
    JUNIT = "junit"
    GITHUB = "github"
    HTML = "html"


class DiffFormat(str, enum.Enum):
    """`diff --format`."""

    TABLE = "table"
    JSON = "json"


class RulesFormat(str, enum.Enum):
    """`rules --format`."""

    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"


class RecalibrationFormat(str, enum.Enum):
    """`recalibrate --format` (and `--report FILE`, always JSON)."""

    TABLE = "table"
    JSON = "json"


def inspect_emitter(fmt: InspectFormat) -> Emitter[Report]:
    match fmt:
        case InspectFormat.TABLE:
            from bnstat.formats.table import render_table

            return render_table
        case InspectFormat.JSON:
            from bnstat.formats.json_report import render_json

            return render_json
        case InspectFormat.MARKDOWN:
            from bnstat.formats.markdown import render_markdown

            return render_markdown
        case InspectFormat.SARIF:
            from bnstat.formats.sarif import render_sarif

            return render_sarif
        case InspectFormat.JUNIT:
            from bnstat.formats.junit import render_junit

            return render_junit
        case InspectFormat.GITHUB:
            from bnstat.formats.github import render_github

            return render_github
        case InspectFormat.HTML:
            from bnstat.formats.html import render_html

            return render_html
    unreachable(fmt)


def diff_emitter(fmt: DiffFormat) -> Emitter[DiffReport]:
    match fmt:
        case DiffFormat.TABLE:
            from bnstat.formats.diff_table import render_diff_table

            return render_diff_table
        case DiffFormat.JSON:
            from bnstat.formats.diff_json import render_diff_json

            return render_diff_json
    unreachable(fmt)


def rules_emitter(fmt: RulesFormat) -> Emitter[RuleListing]:
    match fmt:
        case RulesFormat.TEXT:
            from bnstat.formats.rules_doc import render_rules_text

            return render_rules_text
        case RulesFormat.MARKDOWN:
            from bnstat.formats.rules_doc import render_rules_markdown

            return render_rules_markdown
        case RulesFormat.JSON:
            from bnstat.formats.rules_doc import render_rules_json

            return render_rules_json
    unreachable(fmt)


def recalibration_emitter(fmt: RecalibrationFormat) -> Emitter[RecalibrationReport]:
    match fmt:
        case RecalibrationFormat.TABLE:
            from bnstat.formats.recalibration_table import render_recalibration_table

            return render_recalibration_table
        case RecalibrationFormat.JSON:
            from bnstat.formats.recalibration_json import render_recalibration_json

            return render_recalibration_json
    unreachable(fmt)
