"""How a table meets the terminal: its title and notes at the console's width, its paths whole, and one
table per checkpoint where the whole would not fit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

UNBOUNDED = 1_000_000  # a width no table reaches: the table at its natural width


@dataclass
class Framed:
    """A table between lines at the console's width (a Rich table's own title and caption wrap at the
    table's width, however wide the terminal): ``title`` above; below, ``lines`` printed whole (paths: the
    terminal wraps them, copy-paste works), then ``notes`` (text or :class:`rich.text.Text`) wrapped at the
    console's width. ``table`` None: the title and the lines alone."""

    table: Table | None
    title: str = ""
    lines: list[str] = field(default_factory=list)
    notes: list[str | Text] = field(default_factory=list)

    def __rich__(self) -> Group:
        parts: list = [Text(self.title, style="table.title")] if self.title else []
        parts += [self.table] if self.table is not None else []
        parts += [legend(self.lines)] if self.lines else []
        parts += [n if isinstance(n, Text) else Text(n) for n in self.notes]
        return Group(*parts)


def legend(lines: list[str]) -> Text:
    """Lines printed whole under a table: paths are never folded (the terminal wraps them, copy-paste works)."""
    return Text("\n".join(lines), no_wrap=True, overflow="ignore")


def _shown(console: Console, table: Table, width: int) -> Counter:
    """The characters of ``table`` rendered ``width`` wide, less spaces and the box's lines."""
    lines = console.render_lines(table, console.options.update_width(width), pad=False)
    chars = (ch for line in lines for seg in line for ch in seg.text)
    return Counter(ch for ch in chars if not ch.isspace() and not "\u2500" <= ch <= "\u257f")


def fits(console: Console, table: Table) -> bool:
    """Whether ``table`` shows every character of its cells at ``console``'s width: rendered there and at its
    natural width it shows the same characters (folding a cell moves them; cutting one drops them for '…')."""
    return _shown(console, table, console.width) == _shown(console, table, UNBOUNDED)


def split_to_fit(console: Console, build: Callable[[list, int], Framed], results: list) -> list[Framed]:
    """``build(results, first) -> Framed`` for every checkpoint in one table, or one table per checkpoint
    (numbered as in the whole, the notes said once, under the last) when the whole would not fit
    ``console``'s width."""
    whole = build(results, 1)
    if len(results) == 1 or fits(console, whole.table):
        return [whole]
    parts = [build([r], i) for i, r in enumerate(results, 1)]
    for part in parts[:-1]:
        part.notes = []
    return parts
