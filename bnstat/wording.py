"""Counts, ranges and sizes as a person writes them: `1 layer`, `2 layers`, `0.5..2`,
`3.5 MB`.

Every message and report line that prints a count, a range or a size in megabytes goes
through here, so that none says "1 findings", "input(s)" or "132.2..132.2", and every
size reads alike.
"""

from __future__ import annotations


def plural(word: str, n: int, many: str | None = None) -> str:
    """`word` for one, else `many` (default: `word` + s)."""
    return word if n == 1 else (many if many is not None else f"{word}s")


def counted(n: int, word: str, many: str | None = None) -> str:
    """`1 layer`, `3 layers`, `2 batches` (with many="batches")."""
    return f"{n} {plural(word, n, many)}"


def span(low: str, high: str, between: str = "..") -> str:
    """`low..high`, or the one value when both ends read the same."""
    return low if low == high else f"{low}{between}{high}"


def bound(value: str, other_end: str, word: str) -> str:
    """`at most 3` (`word value`) for the end of a range, or `3` when there is one value."""
    return value if value == other_end else f"{word} {value}"


def megabytes(size: float) -> str:
    """`3.5 MB`: a size in bytes, in units of 2**20 with one decimal."""
    return f"{size / 2**20:.1f} MB"
