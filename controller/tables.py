"""Console tables whose figures are never cut short on a narrow terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def uncut_table(title: str, headers: Sequence[str], body: Sequence[Sequence[str]], *, left: int = 1,
                no_wrap: int = 0) -> Table:
    """A table of ``body``'s rows under ``headers``: each column at least as wide as its widest
    cell, headers wrapping at spaces. The first ``left`` columns are left-justified, the first
    ``no_wrap`` never wrapped (names)."""
    # (the box draws a space between columns: no padding beside it, nor at the edges)
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for i, header in enumerate(headers):
        width = max([len(row[i]) for row in body] + [max(len(w) for w in header.split())])
        t.add_column(header, justify="left" if i < left else "right", min_width=width, no_wrap=i < no_wrap)
    return t


def print_uncut(console: Console, table: Table) -> None:
    """Print ``table`` in the terminal's width, its headers wrapped where that helps, or wider
    than the terminal rather than cut a figure short."""
    needed = Measurement.get(console, console.options.update(width=10_000), table).minimum
    console.print(table, width=max(needed, min(console.width, 10_000)), crop=False)
