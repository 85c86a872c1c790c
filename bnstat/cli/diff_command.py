"""`bnstat diff A B`: per-layer drift of the BatchNorm statistics between two checkpoints."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bnstat.cli.app import DebugOpt, command, display, option
from bnstat.cli.report_options import (
    ConfigOpt,
    EpsOpt,
    MaxDownloadOpt,
    RuleFlags,
    TimeoutOpt,
    remote_options,
)
from bnstat.formats import DiffFormat
from bnstat.report.verdict import Result

ArgA = Annotated[
    str, typer.Argument(metavar="A", help="The checkpoint before (a file or a URL).",
                        show_default=False),
]  # fmt: skip
ArgB = Annotated[
    str, typer.Argument(metavar="B", help="The checkpoint after (a file or a URL).",
                        show_default=False),
]  # fmt: skip
DiffFormatOpt = Annotated[
    DiffFormat, typer.Option("--format", "-f", help="A table, or JSON for scripts.")
]
SourceOpt = Annotated[
    str | None, option("Which model of files holding several (e.g. ema).", metavar="NAME")
]
SideOpt = Annotated[
    str | None, option("Which model of this side's file (overrides --source).", metavar="NAME")
]
FailOnChangeOpt = Annotated[
    bool, typer.Option("--fail-on-change", help="Exit 1 when any layer changed.")
]


@command(short_help="Per-layer drift between two checkpoints.")
def diff(
    a: ArgA, b: ArgB, format: DiffFormatOpt = DiffFormat.TABLE, source: SourceOpt = None,
    source_a: SideOpt = None, source_b: SideOpt = None, fail_on_change: FailOnChangeOpt = False,
    eps: EpsOpt = None, config: ConfigOpt = None, timeout: TimeoutOpt = 30.0,
    max_download: MaxDownloadOpt = 256, debug: DebugOpt = False,
) -> Result:  # fmt: skip
    """Compare the BatchNorm statistics of two checkpoints, layer by layer.

    A and B may be one file: `diff ckpt.pt ckpt.pt --source-a model --source-b ema`.
    """
    from bnstat.diff import diff_checkpoints
    from bnstat.formats import diff_emitter
    from bnstat.location import parse_location

    settings = RuleFlags(config, eps=eps).settings()
    remote = remote_options(timeout, max_download)
    report = diff_checkpoints(
        parse_location(a, remote), parse_location(b, remote), settings,
        source_a or source, source_b or source, fail_on_change,
    )  # fmt: skip
    sys.stdout.write(diff_emitter(format)(report, display(format is DiffFormat.TABLE)))
    return report
