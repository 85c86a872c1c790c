"""Where the text goes: whether stdout is a terminal (for colour), and how wide the
terminal is, decided the way rich decides it, without loading rich for JSON or SARIF.

The width is that of `COLUMNS` when set, else of the terminal on stdin, stdout or stderr
(so `| less` fits the window), else 80 columns, the width of an ordinary terminal window.
"""

from __future__ import annotations

import os
import sys

DEFAULT_WIDTH = 80


def is_terminal() -> bool:
    """stdout is a terminal, or the environment says to treat it as one (`TTY_COMPATIBLE`,
    `FORCE_COLOR`)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def width() -> int:
    """The width to print at, in columns."""
    if is_terminal() and os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return DEFAULT_WIDTH
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns) or DEFAULT_WIDTH
    for descriptor in (0, 1, 2):
        try:
            return os.get_terminal_size(descriptor).columns or DEFAULT_WIDTH
        except (AttributeError, ValueError, OSError):  # not a terminal
            continue
    return DEFAULT_WIDTH
