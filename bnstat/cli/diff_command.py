"""`bnstat diff A B`: per-layer drift of the BatchNorm statistics between two checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bnstat.cli.app import (
    DebugOpt,
    ReportFormat,
    ReportFormatOpt,
    app,
    errors_to_exit_code,
    option,
    terminal,
)
from bnstat.cli.usage import BnstatCommand
from bnstat.formats import OutputFormat

ArgA = Annotated[
    Path, typer.Argument(metavar="A", help="The checkpoint before.", show_default=False)
]
ArgB = Annotated[
    Path, typer.Argument(metavar="B", help="The checkpoint after.", show_default=False)
]
SourceOpt = Annotated[
    str | None, option("Which model of files holding several (e.g. ema).", metavar="NAME")
]
SideOpt = Annotated[
    str | None, option("Which model of this side's file (overrides --source).", metavar="NAME")
]


@app.command(cls=BnstatCommand, short_help="Per-layer drift between two checkpoints.")
def diff(
    a: ArgA, b: ArgB, format: ReportFormatOpt = ReportFormat.TABLE,
    source: SourceOpt = None, source_a: SideOpt = None, source_b: SideOpt = None,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 when any layer changed.")
    ] = False,
    debug: DebugOpt = False,
) -> None:  # fmt: skip
    """Compare the BatchNorm statistics of two checkpoints, layer by layer.

    A and B may be one file: `diff ckpt.pt ckpt.pt --source-a model --source-b ema`.
    """
    from bnstat.diff import diff_checkpoints
    from bnstat.formats.diff import render_diff_json, render_diff_table
    from bnstat.settings import Settings

    with errors_to_exit_code(debug):
        report = diff_checkpoints(a, b, Settings(), source_a or source, source_b or source)
        if format is ReportFormat.JSON:
            sys.stdout.write(render_diff_json(report))
        else:
            color, width = terminal(None, OutputFormat.TABLE)
            sys.stdout.write(render_diff_table(report, color, width))
    raise typer.Exit(1 if fail_on_change and report.changed else 0)
