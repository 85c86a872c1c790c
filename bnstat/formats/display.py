"""How a command's text will be shown, as far as the formats need to know."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Display:
    """How the text will be shown: in colour (a terminal) or not, in how many columns,
    with inspect's per-layer tables or (check) the findings only, the exit code the run
    ends with, for the formats that state it, and the directory it ran in."""

    color: bool = False
    width: int = 120
    layers: bool = True
    exit_code: int = 0
    directory: str = ""  # the working directory, for paths made relative to it (SARIF)
