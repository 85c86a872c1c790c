"""The Typer application, its shared options, and where errors raised while a command
runs become exit codes (those of the argument parser: `bnstat.cli.usage`)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from bnstat import __version__
from bnstat.cli.usage import BnstatGroup
from bnstat.errors import BnstatError
from bnstat.formats import OutputFormat

app = typer.Typer(
    name="bnstat",
    help="Inspect, gate and recalibrate the BatchNorm statistics inside checkpoints.",
    cls=BnstatGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def option(
    help_text: str, *names: str, metavar: str | None = None, minimum: int | None = None
) -> Any:
    """A typer option with a help text (and maybe its spellings, value name and minimum)."""
    return typer.Option(*names, help=help_text, metavar=metavar, min=minimum)


DebugOpt = Annotated[bool, option("Show tracebacks for errors.", "--debug")]


class ReportFormat(str, enum.Enum):
    """The two outputs of `diff` and `recalibrate`."""

    TABLE = "table"
    JSON = "json"


ReportFormatOpt = Annotated[
    ReportFormat, typer.Option("--format", "-f", help="A table, or JSON for scripts.")
]


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
    except Exception as err:  # a bug or an input nobody foresaw: still one line, exit 2
        if debug:
            raise
        typer.echo(
            f"bnstat: error: unexpected {type(err).__name__}: {err} (rerun with --debug)", err=True
        )
        raise typer.Exit(2) from None


def terminal(output: Path | None, fmt: OutputFormat) -> tuple[bool, int]:
    """Colour when the table goes to a terminal; the width of the terminal the text ends up
    in: `COLUMNS` when set, else the terminal on stdin, stdout or stderr (so `| less` fits
    the window), else 80 columns, the width of an ordinary terminal window."""
    from rich.console import Console

    console = Console()
    return output is None and fmt is OutputFormat.TABLE and console.is_terminal, console.width
