"""Render a report as the CLI does: its format's emitter, told the exit code of the run."""

from __future__ import annotations

from bnstat.cli.app import exit_code
from bnstat.formats import InspectFormat, inspect_emitter
from bnstat.formats.display import Display
from bnstat.report.inspection import Report


def render(report: Report, fmt: InspectFormat, layers: bool = True, width: int = 120) -> str:
    display = Display(width=width, layers=layers, exit_code=exit_code(report))
    return inspect_emitter(fmt)(report, display)


def exit_line(report: Report) -> str:
    """The last line of the table: the exit code and why."""
    from bnstat.formats.text import exit_reason

    return exit_reason(report, exit_code(report))
