"""Typed errors.

Every failure a user can cause (a bad file, a bad flag, a bad config, missing data) has a
class here with a message that says what went wrong and what to do. The CLI turns all of
them into exit code 2 in one place (`bnstat.cli.app`); the library never prints and never
exits. Any other exception is a bug, described by `internal_error`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class BnstatError(Exception):
    """A problem with the input or the invocation, explained in one line."""


class CheckpointError(BnstatError):
    """A checkpoint could not be read: unreadable, truncated, corrupt or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose content can only be obtained by running code from it."""


class NoModelError(CheckpointError):
    """A readable file that holds no model (an optimizer state, training arguments): the
    message says what it holds. Not an error for inspection; one for what needs a model."""


class UnsupportedCheckpointError(CheckpointError):
    """A file in a format (or using a part of one) that bnstat does not read."""


class ConfigError(BnstatError):
    """A configuration file or a threshold override is invalid."""


class UsageError(BnstatError):
    """The command was misused (conflicting or invalid options)."""


class NamesArguments(UsageError):
    """An error whose message names arguments of the library's calls.

    The library speaks of an argument by its Python name (`max_samples must be at least
    1`); the CLI, which knows the flag a value came from, names it by its flag
    (`--max-samples must be at least 1`) through `named`.
    """

    def named(self, name: Callable[[str], str]) -> str:
        """The message, each argument called what `name` makes of it."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.named(lambda argument: argument)


class ArgumentError(NamesArguments, ValueError):
    """One argument has a value it cannot take."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(argument, problem)
        self.argument = argument
        self.problem = problem

    def named(self, name: Callable[[str], str]) -> str:
        return f"{name(self.argument)} {self.problem}"


class DataError(BnstatError):
    """Calibration data could not be found or decoded."""


class ModelError(BnstatError):
    """A model could not be built, loaded or run for recalibration."""


class OutputError(BnstatError):
    """An output file could not be written (the target is left as it was)."""


class TemporaryFolderError(BnstatError):
    """The temporary folder (TMPDIR) could not take what a run spills there."""


class MissingDependencyError(BnstatError):
    """An optional dependency is needed for this input or command."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {package}, which is not installed: pip install 'bnstat[{extra}]'"
        )
        self.package = package
        self.extra = extra


class BnstatWarning(UserWarning):
    """Something the library's caller should know that does not stop the call (a
    checkpoint among several that could not be read)."""


def internal_error(err: BaseException, debug_hint: bool = True) -> str:
    """One line for an exception nobody foresaw: a bug to report, not a bad input."""
    hint = " (rerun with --debug for the traceback)" if debug_hint else ""
    return f"internal error, please report: {type(err).__name__}: {err}{hint}"


def unreachable(value: NoReturn) -> NoReturn:
    """Where every member of an enum has been handled: mypy rejects a forgotten one."""
    raise AssertionError(f"unhandled {value!r}")
