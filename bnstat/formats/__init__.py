"""Output formats: each a pure function from a `Report` to text.

`EMITTERS` maps every member of the format enum to its emitter (a test walks them all);
each emitter module is imported only when its format is asked for, so that the table's
rich, say, is not loaded for JSON. Only the CLI writes the text anywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from importlib import import_module

from bnstat.report import Report


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"
    JUNIT = "junit"
    GITHUB = "github"
    HTML = "html"


class View(str, enum.Enum):
    """`inspect` shows layers and findings; `check` shows findings only."""

    INSPECT = "inspect"
    CHECK = "check"


# format -> (module, function, whether the function takes the view's with_layers flag)
EMITTERS: dict[OutputFormat, tuple[str, str, bool]] = {
    OutputFormat.TABLE: ("table", "render_table", True),
    OutputFormat.JSON: ("json_report", "render_json", False),
    OutputFormat.MARKDOWN: ("markdown", "render_markdown", True),
    OutputFormat.SARIF: ("sarif", "render_sarif", False),
    OutputFormat.JUNIT: ("junit", "render_junit", False),
    OutputFormat.GITHUB: ("github", "render_github", False),
    OutputFormat.HTML: ("html", "render_html", False),
}


def emitter(fmt: OutputFormat) -> Callable[..., str]:
    module, function, _ = EMITTERS[fmt]
    render: Callable[..., str] = getattr(import_module(f"{__name__}.{module}"), function)
    return render


def render(
    report: Report, fmt: OutputFormat, view: View, color: bool = False, width: int = 120
) -> str:
    """The report as text in the chosen format."""
    render_format = emitter(fmt)
    with_layers = view is View.INSPECT
    if fmt is OutputFormat.TABLE:
        return render_format(report, with_layers, color, width)
    if EMITTERS[fmt][2]:
        return render_format(report, with_layers)
    return render_format(report)
