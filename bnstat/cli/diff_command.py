"""`bnstat diff A B`: per-layer drift of the BatchNorm statistics between two checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bnstat.cli.app import DebugOpt, app, errors_to_exit_code, terminal
from bnstat.errors import UsageError
from bnstat.formats import OutputFormat

FileArg = Annotated[Path, typer.Argument(show_default=False)]
SourceOpt = Annotated[str | None, typer.Option(help="Which model of files with several.")]
SideOpt = Annotated[
    str | None, typer.Option(help="Which model of this side's file (overrides --source).")
]


@app.command()
def diff(
    a: FileArg, b: FileArg,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
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
        if format not in ("table", "json"):
            raise UsageError(f"--format {format!r}: expected table or json")
        report = diff_checkpoints(a, b, Settings(), source_a or source, source_b or source)
        if format == "json":
            sys.stdout.write(render_diff_json(report))
        else:
            color, width = terminal(None, OutputFormat.TABLE)
            sys.stdout.write(render_diff_table(report, color, width))
    raise typer.Exit(1 if fail_on_change and report.changed else 0)
