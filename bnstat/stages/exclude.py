"""`--exclude GLOB` (and `exclude` in `[tool.bnstat]`): files the user knows are no models.

A folder of checkpoints often holds side files a glob can name (`optimizer.pt`,
`runs/*`, `*.tmp.pt`). A glob is matched against a file's path relative to the argument
it was found through (the folder, or the fixed part of a pattern; a file named on the
command line, as given), with `fnmatch` rules (`*` also crosses `/`); a glob without a
`/` also matches any one part of that path, so `runs` leaves out a whole folder (which
is then not searched, nor its files counted) and `optimizer.pt` that file in every
folder. Excluded files count as skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import PurePath


class Exclusion:
    """The exclude globs, and how many paths they have matched so far."""

    def __init__(self, globs: Sequence[str] = ()) -> None:
        self.globs = tuple(globs)
        self.matched = 0

    def __call__(self, relative: PurePath) -> bool:
        """Whether the path (relative to its argument) is excluded; counts it if so."""
        text = relative.as_posix()
        hit = any(
            fnmatchcase(text, glob)
            or ("/" not in glob and any(fnmatchcase(part, glob) for part in relative.parts))
            for glob in self.globs
        )
        self.matched += hit
        return hit


def relative_to_pattern(match: str, pattern: str) -> PurePath:
    """A pattern's match relative to the pattern's fixed part (its parts before the first
    that has a wildcard)."""
    fixed = 0
    for part in PurePath(pattern).parts:
        if any(char in part for char in "*?["):
            break
        fixed += 1
    return PurePath(*PurePath(match).parts[fixed:])
