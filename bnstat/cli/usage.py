"""Usage errors as one line, usage lines as the docs write them.

click prints a misused command (an unknown option, a missing argument, a value out of
range) as three lines: the usage, a hint and the error. bnstat prints every error as one
`bnstat: error: ...` line, so the command group catches click's errors and says the same
in one line with the hint to `--help`, exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import typer
from typer.core import TyperCommand, TyperGroup


def _click_class(name: str) -> type[Exception]:
    """One of click's exception classes, reached through typer's public `BadParameter`
    (recent typer versions carry their own copy of click)."""
    found = next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
    return cast("type[Exception]", found)


_USAGE_ERROR = _click_class("UsageError")
_CLICK_ERROR = _click_class("ClickException")


def one_line(err: Exception) -> str:
    """click's message for `err` on one line, starting in lower case like bnstat's own."""
    message = " ".join(str(getattr(err, "format_message", err.__str__)()).split())
    if message[1:2].islower():  # "Missing argument" -> "missing argument", not "ONNX" -> "oNNX"
        message = message[0].lower() + message[1:]
    return message.rstrip(".")


def usage_line(err: Exception) -> str:
    """A usage error as one line: what is wrong, and where the command's help is."""
    context = getattr(err, "ctx", None)
    command = context.command_path if context is not None else "bnstat"
    return f"bnstat: error: {one_line(err)}; see '{command} --help'"


class BnstatGroup(TyperGroup):
    """The command group, with click's three-line usage errors turned into one line."""

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None,
        complete_var: str | None = None, standalone_mode: bool = True,
        windows_expand_args: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        run = partial(
            super().main, args, prog_name, complete_var, standalone_mode=False,
            windows_expand_args=windows_expand_args, **extra,
        )  # fmt: skip
        if not standalone_mode:
            return run()
        try:
            code = run()
        except _USAGE_ERROR as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # plain `bnstat`: the help
                raise SystemExit(_show_help(err)) from None
            typer.echo(usage_line(err), err=True)
            raise SystemExit(2) from None
        except _CLICK_ERROR as err:
            typer.echo(f"bnstat: error: {one_line(err)}", err=True)
            raise SystemExit(getattr(err, "exit_code", 1)) from None
        except typer.Abort:
            typer.echo("bnstat: aborted", err=True)
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def _show_help(err: Exception) -> int:
    """Print the help that click attaches to a bare `bnstat`; its exit code."""
    err.show()  # type: ignore[attr-defined]
    return int(getattr(err, "exit_code", 2))


class BnstatCommand(TyperCommand):
    """A command whose usage line names its arguments as in the docs: `CHECKPOINT...`,
    `[CODE]` (typer writes required ones in braces)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces: list[str] = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]
