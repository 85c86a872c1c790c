"""Usage errors as one line, usage lines as the docs write them.

click prints a misused command (an unknown option, a missing argument, a value out of
range) as three lines: the usage, a hint and the error. bnstat prints every error as one
`bnstat: error: ...` line, so the command group (`bnstat.cli.app`) catches click's errors
and says the same here in one line, with the hint to `--help`.
"""

from __future__ import annotations

from typing import Any, cast

import typer
from typer.core import TyperCommand


def _click_class(name: str) -> type[Exception]:
    """One of click's exception classes, reached through typer's public `BadParameter`
    (recent typer versions carry their own copy of click)."""
    found = next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
    return cast("type[Exception]", found)


USAGE_ERROR = _click_class("UsageError")
CLICK_ERROR = _click_class("ClickException")


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


class BnstatCommand(TyperCommand):
    """A command whose usage line names its arguments as in the docs: `CHECKPOINT...`,
    `[CODE]` (typer writes required ones in braces)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces: list[str] = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]
