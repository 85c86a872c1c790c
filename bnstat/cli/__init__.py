"""The `bnstat` command line: parse, build settings, call the library, render, exit.

Exit codes: 0 nothing at or above --fail-on; 1 findings at or above it; 2 an input could
not be read or the command was misused. Errors are one line on stderr (a traceback only
with --debug). Every command returns a result; `bnstat.cli.app` alone turns results and
errors into exit codes.
"""

from __future__ import annotations

import os

# commands are listed in --help in the order they are registered
# isort: off
from bnstat.cli import inspect_commands, rules_command, recalibrate_command, diff_command
# isort: on

from bnstat.cli.app import app

__all__ = [
    "app",
    "diff_command",
    "inspect_commands",
    "main",
    "recalibrate_command",
    "rules_command",
]


def main() -> None:
    """Console-script entry point."""
    # torch's CPU allocator puts tensors of 2 MB and more on transparent huge pages when
    # this is set before its first allocation: a recalibration's activations are hundreds
    # of MB each, and on 4 KB pages their page faults and TLB misses cost a forward pass
    # up to a third more while the cache holds gigabytes (the README's scale benchmark).
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    app()
