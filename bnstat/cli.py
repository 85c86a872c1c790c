"""The `bnstat` command line: parse, build settings, call the library, render, exit.

Exit codes: 0 nothing at or above --fail-on; 1 findings at or above it; 2 an input could
not be read or the command was misused. Errors are one line on stderr (a traceback only
with --debug); they are turned into exit code 2 here and nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat import __version__
from bnstat.errors import BnstatError, UsageError
from bnstat.formats import OutputFormat, View

if TYPE_CHECKING:
    from bnstat.settings import Settings

PIPE_WIDTH = 160  # lines are not wrapped at 80 columns when the output is a file or a pipe

app = typer.Typer(
    name="bnstat",
    help="Inspect, gate and recalibrate the BatchNorm statistics inside checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Checkpoints = Annotated[
    list[str],
    typer.Argument(help="Checkpoint files, directories or glob patterns.", show_default=False),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
]
FailOnOpt = Annotated[
    str | None,
    typer.Option(help="error|warning|info|never: lowest severity that fails [default: error]."),
]
Codes = Annotated[
    list[str] | None,
    typer.Option(help="Rule codes or prefixes, comma-separated or repeated.", show_default=False),
]
LayersOpt = Annotated[
    list[str] | None,
    typer.Option(help="Only report layers matching this glob (repeatable).", show_default=False),
]
EpsOpt = Annotated[
    float | None,
    typer.Option(help="eps to assume where the file does not record it [default: 1e-05]."),
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Override a rule threshold: NAME=VALUE (see `bnstat rules`).", show_default=False
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(help="Settings file [default: [tool.bnstat] in the nearest pyproject.toml]."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


@dataclass(frozen=True)
class RuleFlags:
    """The command-line flags that adjust the configured settings."""

    config: Path | None = None
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: str | None = None
    eps: float | None = None
    thresholds: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()

    def settings(self) -> Settings:
        """Defaults, then the config file (or nearest pyproject.toml), then these flags."""
        from bnstat.settings import Settings, find_pyproject, load_config, with_overrides

        if self.config is not None and not self.config.is_file():
            raise UsageError(f"--config {self.config}: no such file")
        source = self.config if self.config is not None else find_pyproject(Path.cwd())
        base = load_config(source) if source is not None else Settings()
        return with_overrides(
            base, select=self.select, ignore=self.ignore, fail_on=self.fail_on, eps=self.eps,
            thresholds=self.thresholds, layers=self.layers,
        )  # fmt: skip


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bnstat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Inspect, gate and recalibrate the BatchNorm statistics inside checkpoints."""


@contextmanager
def errors_to_exit_code(debug: bool) -> Iterator[None]:
    """Turn every expected error into one line on stderr and exit code 2."""
    try:
        yield
    except BnstatError as err:
        if debug:
            raise
        typer.echo(f"bnstat: error: {err}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("bnstat: interrupted", err=True)
        raise typer.Exit(130) from None


def _emit(text: str, output: Path | None, verdict: str) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--output {output}: {err.strerror or err}") from err
    typer.echo(f"report written to {output}; {verdict}", err=True)


def _terminal(output: Path | None, fmt: OutputFormat) -> tuple[bool, int]:
    """Colour and width: the terminal's own, or plain and wide for files and pipes."""
    if output is not None or fmt is not OutputFormat.TABLE:
        return False, PIPE_WIDTH
    from rich.console import Console

    console = Console()
    return (True, console.width) if console.is_terminal else (False, PIPE_WIDTH)


def _report(view: View, checkpoints: list[str], fmt: OutputFormat, output: Path | None,
            flags: RuleFlags, debug: bool) -> None:  # fmt: skip
    from bnstat.analysis import analyze
    from bnstat.formats import render
    from bnstat.inputs import expand_inputs
    from bnstat.report import exit_code, exit_reason

    with errors_to_exit_code(debug):
        report = analyze(expand_inputs(checkpoints), flags.settings(), debug=debug)
        color, width = _terminal(output, fmt)
        _emit(render(report, fmt, view, color=color, width=width), output, exit_reason(report))
        for entry in report.checkpoints:
            if entry.error is not None:
                typer.echo(f"bnstat: error: {entry.path}: {entry.error}", err=True)
    raise typer.Exit(exit_code(report))


def _report_command(view: View, summary: str) -> Callable[..., None]:
    """`inspect` and `check` take the same options and differ only in what they show."""

    def command(
        checkpoints: Checkpoints, format: FormatOpt = OutputFormat.TABLE, output: OutputOpt = None,
        fail_on: FailOnOpt = None, select: Codes = None, ignore: Codes = None,
        layers: LayersOpt = None, eps: EpsOpt = None, threshold: ThresholdOpt = None,
        config: ConfigOpt = None, debug: DebugOpt = False,
    ) -> None:  # fmt: skip
        flags = RuleFlags(config, tuple(select or ()), tuple(ignore or ()), fail_on, eps,
                          tuple(threshold or ()), tuple(layers or ()))  # fmt: skip
        _report(view, checkpoints, format, output, flags, debug)

    command.__doc__ = summary
    return command


app.command("inspect")(
    _report_command(
        View.INSPECT, "Report every BatchNorm layer (channels, distributions) and the findings."
    )
)
app.command("check")(
    _report_command(
        View.CHECK, "The CI gate: findings only, machine formats, exit code by --fail-on."
    )
)


@app.command()
def rules(
    code: Annotated[str | None, typer.Argument(help="A rule code or name, e.g. BN004.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="text|markdown|json")] = "text",
    config: ConfigOpt = None, threshold: ThresholdOpt = None, debug: DebugOpt = False,
) -> None:  # fmt: skip
    """List the rules, or explain one: what it checks, why, an example, the fix."""
    from bnstat.formats.rules_doc import render_rules

    with errors_to_exit_code(debug):
        settings = RuleFlags(config, thresholds=tuple(threshold or ())).settings()
        sys.stdout.write(render_rules(code, format, settings))


def main() -> None:
    """Console-script entry point."""
    app()
