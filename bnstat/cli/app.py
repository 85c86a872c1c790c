"""The Typer application, its shared options, and the one place where results and errors
become exit codes.

Every command is a function registered with `command()` that returns a result
(`bnstat.report`); `exit_code` turns its verdict into 0 (passed), 1 (failed the gate) or
2 (an input could not be read), and `_stopped` turns what stopped a command instead into
2 (a bad input or invocation, one line on stderr; a bug, "internal error, please
report"; the traceback under --debug), 130 (Ctrl-C) or 143 (SIGTERM). The command group
turns the argument parser's complaints into 2 as well.
"""

from __future__ import annotations

import functools
import signal
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from bnstat.cli import terminal
from bnstat.cli.usage import CLICK_ERROR, USAGE_ERROR, BnstatCommand, one_line, usage_line
from bnstat.errors import BnstatError, NamesArguments, internal_error
from bnstat.formats.display import Display
from bnstat.report.verdict import Result, Verdict
from bnstat.termination import Terminated, sigterm_raises
from bnstat.version import __version__

if TYPE_CHECKING:
    from bnstat.atomic import Write

EXIT_CODES = {Verdict.PASSED: 0, Verdict.FAILED: 1, Verdict.UNREADABLE: 2}
ERROR = 2  # a bad input or invocation, or a bug
INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
TERMINATED = 128 + signal.SIGTERM


def exit_code(result: Result) -> int:
    """The exit code of a command that ran to the end."""
    return EXIT_CODES[result.verdict]


def _stopped(err: BaseException, debug: bool, writes: Sequence[Write] = ()) -> int:
    """Say on stderr what stopped a command, and the true state of each output it had
    begun to write; its exit code."""
    outputs = "; ".join(str(write) for write in writes)
    if isinstance(err, KeyboardInterrupt):
        typer.echo(f"bnstat: interrupted{': ' + outputs if outputs else ''}", err=True)
        return INTERRUPTED
    if isinstance(err, Terminated):
        if outputs:  # otherwise quietly, as a process ended by the signal
            typer.echo(f"bnstat: terminated: {outputs}", err=True)
        return TERMINATED
    if not isinstance(err, Exception) or isinstance(err, CLICK_ERROR | typer.Exit | typer.Abort):
        raise err  # the interpreter's and click's own: they know their exit
    if debug:
        traceback.print_exception(err)
    message = _message(err) if isinstance(err, BnstatError) else internal_error(err, not debug)
    typer.echo(f"bnstat: error: {message}", err=True)
    return ERROR


def _message(err: BnstatError) -> str:
    """The error's one line, an argument named by the flag that gives it."""
    if isinstance(err, NamesArguments):
        return err.named(flag)
    return str(err)


def flag(argument: str) -> str:
    """The command-line flag of a library argument: `max_samples` is `--max-samples`."""
    return "--" + argument.replace("_", "-")


class BnstatGroup(TyperGroup):
    """The command group: a command's exit code becomes the process's, and click's
    three-line usage errors become one line and exit code 2."""

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None,
        complete_var: str | None = None, standalone_mode: bool = True,
        windows_expand_args: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        run = functools.partial(
            super().main, args, prog_name, complete_var, standalone_mode=False,
            windows_expand_args=windows_expand_args, **extra,
        )  # fmt: skip
        if not standalone_mode:
            return run()
        try:
            with sigterm_raises():  # for the whole run: cleanup code runs, exit 143
                code = run()
        except Terminated:
            raise SystemExit(TERMINATED) from None
        except USAGE_ERROR as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # plain `bnstat`: the help
                err.show()  # type: ignore[attr-defined]
                raise SystemExit(int(getattr(err, "exit_code", ERROR))) from None
            typer.echo(usage_line(err), err=True)
            raise SystemExit(ERROR) from None
        except CLICK_ERROR as err:
            typer.echo(f"bnstat: error: {one_line(err)}", err=True)
            raise SystemExit(getattr(err, "exit_code", 1)) from None
        except typer.Abort:
            typer.echo("bnstat: aborted", err=True)
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)  # help and --version: None


app = typer.Typer(
    name="bnstat",
    help="Inspect, gate and recalibrate the BatchNorm statistics inside checkpoints.",
    cls=BnstatGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def command(
    name: str | None = None, *, short_help: str
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Register a command whose function returns a result; the command's exit code is
    `exit_code(result)`, or `_stopped`'s for what stopped it (the function's `debug`
    parameter asks for tracebacks)."""

    def register(function: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(function)
        def run(**arguments: Any) -> int:
            from bnstat.atomic import recorded_writes

            debug = bool(arguments.get("debug"))
            with recorded_writes() as writes, warnings.catch_warnings():
                if not debug:  # what matters of a library's warnings, bnstat says itself
                    warnings.simplefilter("ignore")
                try:
                    result = function(**arguments)
                except BaseException as err:
                    return _stopped(err, debug, writes)
            return exit_code(result)

        app.command(name, cls=BnstatCommand, short_help=short_help)(run)
        return function

    return register


def option(
    help_text: str, *names: str, metavar: str | None = None, minimum: int | None = None
) -> Any:
    """A typer option with a help text (and maybe its spellings, value name and minimum)."""
    return typer.Option(*names, help=help_text, metavar=metavar, min=minimum)


DebugOpt = Annotated[bool, option("Show tracebacks for errors.", "--debug")]


def display(table: bool, **fields: Any) -> Display:
    """How a command's text will be shown: colour for a table that goes to a terminal,
    the terminal's width (`bnstat.cli.terminal`), and any other `Display` field."""
    return Display(color=table and terminal.is_terminal(), width=terminal.width(), **fields)


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
