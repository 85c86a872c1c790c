"""Output formats: each a pure function from a `Report` to text.

The format enum is mapped exhaustively to emitters (a test walks every member); only the
CLI writes the text anywhere.
"""

from __future__ import annotations

import enum

from bnstat.report import Report


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


class View(str, enum.Enum):
    """`inspect` shows layers and findings; `check` shows findings only."""

    INSPECT = "inspect"
    CHECK = "check"


def render(
    report: Report, fmt: OutputFormat, view: View, color: bool = False, width: int = 120
) -> str:
    """The report as text in the chosen format."""
    with_layers = view is View.INSPECT
    if fmt is OutputFormat.TABLE:
        from bnstat.formats.table import render_table  # rich is imported only for tables

        return render_table(report, with_layers, color, width)
    if fmt is OutputFormat.JSON:
        from bnstat.formats.json_report import render_json

        return render_json(report)
    if fmt is OutputFormat.MARKDOWN:
        from bnstat.formats.markdown import render_markdown

        return render_markdown(report, with_layers)
    raise AssertionError(f"unhandled format {fmt}")
