"""Files the commands write besides their standard output: reports and baselines.

Each is written atomically, and its folder is checked before any work is done: a run
on data must not compute for an hour and then find it cannot write its report.
"""

from __future__ import annotations

from pathlib import Path

from bnstat.errors import UsageError


def require_writable(path: Path | None, option: str) -> None:
    """Refuse `option PATH` now if its folder is missing or cannot be written."""
    from bnstat.atomic import check_writable

    if path is None:
        return
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {path.parent} does not exist")
    check_writable(path.parent)


def write_text(path: Path, text: str, option: str) -> None:
    """Write `text` to `path` (given as `option PATH`), atomically."""
    from bnstat.atomic import atomic_output

    require_writable(path, option)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
