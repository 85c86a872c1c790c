"""Tables that fit the width they are printed at, in a terminal as in a pipe.

Every terminal table (inspect, diff, recalibrate) describes its columns here and gets a
rich `Table` no wider than the width asked for. What gives way, in order: long headers
wrap onto a second line; then optional columns are dropped, least useful first (each
table ranks its own, the histogram before the numbers); last, layer names are shortened
from the left, keeping the end that tells them apart (`…blocks.4.mlp.norm`), cut at a
`.`, `/` or `:` where that wastes little room. The name column and the columns without a
`drop` rank (findings) always stay. Names are shortened by `bnstat.formats.names`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from bnstat.formats.names import abbreviate, distinguishing_width

GAP = 2  # spaces between two columns (rich's padding of one on either side)
NAME_FLOOR = 8  # a name column never gets narrower than this


@dataclass(frozen=True, eq=False)
class Column:
    """One column: its title, its cells, how it may give way.

    `drop`: optional columns go in increasing order of `drop`; None keeps the column.
    `kind`: "name" cells are shortened from the left; "words" cells wrap between words.
    """

    title: str
    cells: Sequence[str | Text]
    justify: Literal["left", "right"] = "right"
    drop: int | None = None
    kind: Literal["plain", "name", "words"] = "plain"

    @cached_property
    def natural(self) -> int:
        return max([cell_len(self.title), *(_width(cell) for cell in self.cells)])

    @cached_property
    def narrowest(self) -> int:
        """The width with its title wrapped and its cells shortened as far as they go."""
        title = max(cell_len(word) for word in self.title.split() or [""])
        if self.kind == "name":
            return max(title, distinguishing_width([str(c) for c in self.cells]))
        if self.kind == "words":
            words = [w for cell in self.cells for w in str(cell).split()]
            return max([title, *(cell_len(w) for w in words)])
        return max([title, *(_width(cell) for cell in self.cells)])


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def table_of_width(columns: Sequence[Column], width: int) -> Table:
    """A borderless table of `columns` at most `width` cells wide (when the kept columns
    can be that narrow at all)."""
    kept, widths = column_widths(columns, width)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, size in zip(kept, widths, strict=True):
        title = textwrap.fill(column.title, size) if cell_len(column.title) > size else column.title
        wraps = column.kind == "words"
        table.add_column(title, justify=column.justify, width=size, no_wrap=not wraps)
    cells = [_cells(column, size) for column, size in zip(kept, widths, strict=True)]
    for row in zip(*cells, strict=True):
        table.add_row(*row)
    return table


def column_widths(columns: Sequence[Column], width: int) -> tuple[list[Column], list[int]]:
    """The columns that stay and their widths."""
    if _total([c.natural for c in columns]) <= width:
        return list(columns), [c.natural for c in columns]
    optional = sorted((c for c in columns if c.drop is not None), key=lambda c: c.drop or 0)
    dropped: list[Column] = []
    while optional and _needs(columns, dropped, width) > width:
        dropped.append(optional.pop(0))
    kept = [c for c in columns if c not in dropped]
    widths = [c.narrowest for c in kept]
    spare = width - _total(widths)
    if spare < 0:  # only the columns that always stay are left: the names take the cut
        names = [i for i, c in enumerate(kept) if c.kind == "name"]
        for i in names:
            widths[i] = max(NAME_FLOOR, widths[i] + spare // len(names))
        return kept, widths
    order = sorted(range(len(kept)), key=lambda i: _generosity(kept[i]))
    targets = [[_wanted(c, width) for c in kept], [_two_lines(c) for c in kept]]
    for target in [*targets, [c.natural for c in kept]]:
        for i in order:
            extra = min(spare, max(target[i] - widths[i], 0))
            widths[i] += extra
            spare -= extra
    return kept, widths


def _needs(columns: Sequence[Column], dropped: list[Column], width: int) -> int:
    return _total([_wanted(c, width) for c in columns if c not in dropped])


def _wanted(column: Column, width: int) -> int:
    """The width a column asks for before optional columns give way: names whole up to
    half the line, findings on one line up to a quarter, the rest as narrow as they go."""
    share = {"name": width // 2, "words": width // 4}.get(column.kind, 0)
    return max(column.narrowest, min(column.natural, share))


def _two_lines(column: Column) -> int:
    """The narrowest width at which the column's title takes at most two lines."""
    width = column.narrowest
    while len(textwrap.wrap(column.title, width)) > 2:
        width += 1
    return width


def _generosity(column: Column) -> tuple[int, int]:
    """Who gets room back first: names, then columns that always stay, then the rest
    from the most to the least useful."""
    if column.kind == "name":
        return (0, 0)
    return (1, 0) if column.drop is None else (2, -column.drop)


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * max(len(widths) - 1, 0)


def _cells(column: Column, size: int) -> list[str | Text]:
    if column.kind == "name":
        return [abbreviate(str(cell), size) for cell in column.cells]
    return list(column.cells)
