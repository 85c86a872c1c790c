"""Layer names shortened from the left to a width, keeping the end that tells them apart.

`…blocks.4.mlp.norm`: a name is cut after a `.`, `/` or `:` where that wastes little
room, else anywhere. Widths are terminal cells (a CJK character takes two); for the
usual ASCII names that is their length, and rich's measure is loaded only for others.
Used by the terminal tables and the HTML overview.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

ELLIPSIS = "…"
_CUT = re.compile(r"[./:]")


def cell_width(text: str) -> int:
    """The cells `text` takes in a terminal."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _tails(name: str) -> list[str]:
    """The name and its ends after each separator, longest first."""
    return [name, *(name[m.end() :] for m in _CUT.finditer(name) if m.end() < len(name))]


def distinguishing_width(names: Sequence[str]) -> int:
    """How wide a column must be to show every name, or `…` and the shortest end of it
    that no other name shares."""
    counts = Counter(tail for name in set(names) for tail in set(_tails(name)))
    widest = 0
    for name in set(names):
        unique = [t for t in _tails(name)[1:] if counts[t] == 1]
        shortest = 1 + cell_width(unique[-1]) if unique else cell_width(name)  # … is 1 cell
        widest = max(widest, min(shortest, cell_width(name)))
    return widest


def abbreviate(name: str, width: int) -> str:
    """`name`, or `…` and its end in `width` cells: cut after a separator when that keeps
    at least two thirds of the room, else anywhere."""
    if cell_width(name) <= width:
        return name
    fitting = [tail for tail in _tails(name)[1:] if cell_width(tail) + 1 <= width]
    if fitting and 3 * (cell_width(fitting[0]) + 1) >= 2 * width:
        return ELLIPSIS + fitting[0]
    tail = name
    while tail and cell_width(tail) + 1 > width:
        tail = tail[1:]
    return ELLIPSIS + tail
