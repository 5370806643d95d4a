"""Which columns a table shows, and at what width: the report layer's one answer to narrow terminals.

``Fitted`` wraps a table builder. By default it drops the least important columns, in a stated
order, until the table fits the console, and its caption names what was hidden. ``TableLayout``
carries the two choices a user can make (``--wide``: drop nothing, print at the table's natural
width; ``--columns``: these columns only). Numbers and statuses are never cut: builders give them
a minimum width (``min_widths``), and labels fold instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dnnbench.errors import CONTROL, InputError, printable

#: The console width behind ``--wide``: wider than any table, so rich lays each out at its natural
#: width and never crops a line (the terminal, or the file it is piped to, gets long lines).
WIDE = 100_000


def normalize(name: str) -> str:
    """A column name as ``--columns`` compares it: case, spaces, ``_`` and punctuation do not count
    (``train acc``, ``train_acc`` and ``Train-Acc`` are one name)."""
    return re.sub(r"[^0-9a-zα-ω.]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class TableLayout:
    """The user's choice of columns for a command's results table.

    ``wide``: never drop a column (print wider than the terminal if needed). ``columns``: the
    normalized names given to ``--columns`` (None: all that fit); the table's identifying column
    (label, optimizer, row) always shows."""

    wide: bool = False
    columns: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, wide: bool, columns: str | None) -> TableLayout:
        """``--wide`` and ``--columns A,B`` as given; names are checked against a table by ``check``."""
        if columns is None:
            return cls(wide=wide)
        names = [normalize(part) for part in columns.split(",")]
        if not all(names):
            raise InputError(f"--columns: an empty column name in {columns!r}; give NAME,NAME,...")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"--columns: {', '.join(twice)} given twice")
        return cls(wide=wide, columns=tuple(names))

    def picks(self, key: str, header: str) -> bool:
        """Whether the column ``key`` (its ``--columns`` name) / ``header`` is asked for."""
        return self.columns is None or normalize(key) in self.columns or normalize(header) in self.columns

    def check(self, columns: Mapping[str, str], kept: Sequence[str] = ()) -> None:
        """Every name of ``--columns`` must be a column of the table (``columns``: name -> header,
        the identifying ``kept`` ones aside); raises one ``InputError`` naming the unknown ones
        and the valid names. Called before anything is trained or read."""
        if self.columns is None:
            return
        known = {normalize(k) for k in (*columns, *columns.values(), *kept)}
        unknown = [name for name in self.columns if name not in known]
        if unknown:
            always = f" ({', '.join(kept)} always show{'s' if len(kept) == 1 else ''})" if kept else ""
            raise InputError(
                f"--columns: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"valid: {', '.join(columns)}{always}"
            )

    def without_choice(self) -> TableLayout:
        """For the tables after a command's results table (main effects, time to target): ``--wide``
        applies to them, ``--columns`` names the results table's columns only."""
        return TableLayout(wide=self.wide)


#: The default layout: every table fitted to the console.
FIT = TableLayout()


class SafeConsole(Console):
    """A console for text that came from files and user code (names, tags, messages): a string is
    text, never rich markup or an emoji code, and its control characters are escaped
    (``errors.printable``), in tables, panels and plain prints alike, before anything is measured."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **{**kwargs, "markup": False, "emoji": False})

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(clean(o) for o in objects), **kwargs)


def clean(renderable: Any) -> Any:
    """``renderable`` with every control character in its text escaped: a ``Text`` (its styles
    kept), and the cells, headers, title and caption of a ``Table``, a ``Panel`` or a ``Group``
    (in place). Strings are left to ``SafeConsole.render_str``."""
    if isinstance(renderable, Text):
        return _clean_text(renderable)
    if isinstance(renderable, Table):
        renderable.title, renderable.caption = clean(renderable.title), clean(renderable.caption)
        for column in renderable.columns:
            column.header, column.footer = clean(column.header), clean(column.footer)
            column._cells[:] = [clean(cell) for cell in column._cells]  # rich keeps a column's cells here
    elif isinstance(renderable, Panel):
        renderable.renderable = clean(renderable.renderable)
        renderable.title, renderable.subtitle = clean(renderable.title), clean(renderable.subtitle)
    elif isinstance(renderable, Group):
        renderable._renderables = tuple(clean(r) for r in renderable._renderables)  # rich keeps them here
    return renderable


def _clean_text(text: Text) -> Text:
    if not CONTROL.search(text.plain):
        return text
    cuts = sorted({i for m in CONTROL.finditer(text.plain) for i in (m.start(), m.end())})
    out = text.blank_copy()
    for piece in text.divide(cuts):
        if CONTROL.fullmatch(piece.plain):  # one control character: its escape, in its styles
            shown = printable(piece.plain)
            piece = Text(shown, style=piece.style, spans=[s._replace(start=0, end=len(shown)) for s in piece.spans])
        out.append_text(piece)
    return out


def console(*, stderr: bool = False, quiet: bool = False, layout: TableLayout | None = None) -> Console:
    """A console that honours NO_COLOR; piped or in CI it does not squeeze tables to 80 columns,
    and with ``--wide`` it never narrows or crops one. It prints text from files as text (``SafeConsole``)."""
    stream = sys.stderr if stderr else sys.stdout
    if layout is not None and layout.wide:
        width: int | None = WIDE
    else:
        width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return SafeConsole(
        stderr=stderr, quiet=quiet, highlight=False, soft_wrap=False, width=width, markup=False, emoji=False
    )


def add_columns(
    table: Table,
    headers: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    *,
    right: Collection[str] = (),
    labels: Mapping[str, int] | None = None,
    flexible: Mapping[str, int | None] | None = None,
) -> None:
    """Add ``headers`` to ``table`` so that no number or status is ever cut: such a column is at
    least as wide as its widest cell (rich folds its header instead). A column of ``labels`` folds
    past the width given; a ``flexible`` one (diagnosis, status counts, notes) takes what is left,
    down to the width given or its longest word, so it breaks between words, never inside a number or a status.
    ``right``: right-justified."""
    labels, flexible = labels or {}, flexible or {}
    for header in headers:
        cells = [str(row[header]) for row in rows]
        widest = max((len(cell) for cell in cells), default=1)
        if header in flexible:
            minimum = max([flexible[header] or 1, *(len(word) for cell in cells for word in cell.split())])
        else:
            minimum = min(widest, labels.get(header, widest))
        table.add_column(header, justify="right" if header in right else "left", overflow="fold", min_width=minimum)


def filled_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    caption: str | None = None,
    right: Collection[str] = (),
    labels: Mapping[str, int] | None = None,
    flexible: Mapping[str, int | None] | None = None,
) -> Table:
    """A table as every command's table looks: ``title`` on the left, bold headers, the ``headers``
    columns (``add_columns``: ``right``, ``labels``, ``flexible``), a line per cells dict of ``rows``,
    and ``caption`` under it."""
    table = Table(title=title, title_justify="left", header_style="bold")
    add_columns(table, headers, rows, right=right, labels=labels, flexible=flexible)
    for cells in rows:
        table.add_row(*(cells[h] for h in headers))
    table.caption = caption
    return table


def fitted_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    drop_order: Sequence[str],
    *,
    caption: str | None = None,
    right: Collection[str] = (),
    labels: Mapping[str, int] | None = None,
    flexible: Mapping[str, int | None] | None = None,
    columns: Mapping[str, str] | None = None,
    layout: TableLayout | None = None,
) -> Fitted:
    """``filled_table`` as a ``Fitted``: ``headers`` less those hidden to fit (``drop_order``) or
    not chosen (``columns``, ``layout``)."""

    def build(hidden: Sequence[str]) -> Table:
        shown = [h for h in headers if h not in hidden]
        return filled_table(title, shown, rows, caption=caption, right=right, labels=labels, flexible=flexible)

    return Fitted(build, drop_order, columns=columns, layout=layout)


class Fitted:
    """A table that fits the console: at render time it drops its least important columns, in a
    stated order, until it fits, and its caption names what was hidden.

    ``build(hidden)`` makes the table without the columns whose headers are in ``hidden``;
    ``drop_order``: headers, least important first. ``columns``: the ``--columns`` name -> header
    of each column a user may choose (None: the table offers no choice; its identifying column is
    never in it). ``layout``: the user's choice; None for a command without ``--wide``."""

    def __init__(
        self,
        build: Callable[[Sequence[str]], Table],
        drop_order: Sequence[str],
        *,
        columns: Mapping[str, str] | None = None,
        layout: TableLayout | None = None,
    ) -> None:
        self.build, self.drop_order = build, list(drop_order)
        self.columns, self.layout = columns, layout

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table | Group]:
        layout = self.layout or TableLayout()
        unchosen = [header for key, header in (self.columns or {}).items() if not layout.picks(key, header)]
        hidden: list[str] = []
        table = clean(self.build(unchosen))  # escaped before it is measured
        fits = True
        if not layout.wide:
            for name in [h for h in self.drop_order if h not in unchosen]:
                if fit_widths(console, table, options.max_width):
                    break
                hidden.append(name)
                table = clean(self.build([*unchosen, *hidden]))
            else:
                fits = fit_widths(console, table, options.max_width)
        if hidden:
            hint = "a wider terminal or COLUMNS=N shows them" + ("; --wide keeps every column" if self.layout else "")
            table.caption = (f"{table.caption}\n" if table.caption else "") + (
                f"hidden to fit {options.max_width} columns: {', '.join(hidden)} ({hint})"
            )
        # narrower than the kept columns whole: one column per line rather than a cut number
        yield table if fits else records(table, options.max_width)


def records(table: Table, width: int) -> Group:
    """``table`` as records: per row its first cell (bold), then each other column as ``header: value``
    on a line of its own -- on two lines, the value indented, when both do not fit in ``width``."""
    columns = table.columns
    cells = [list(column.cells) for column in columns]
    parts: list[Text] = []
    if table.title:
        parts.append(_as_text(table.title, "bold"))
    for i in range(len(table.rows)):
        parts.append(Text(""))
        parts.append(_as_text(cells[0][i], "bold"))
        for column, values in zip(columns[1:], cells[1:], strict=True):
            header, value = _as_text(column.header).plain, _as_text(values[i])
            if not value.plain.strip():
                continue
            if len(header) + 2 + value.cell_len <= width - 2:
                parts.append(Text.assemble("  ", (f"{header}: ", "dim"), value))
            else:
                indent = " " * max(0, min(4, width - value.cell_len))  # the value whole on its line, if it can be
                parts += [Text.assemble("  ", (f"{header}:", "dim")), Text.assemble(indent, value)]
    caption = _as_text(table.caption or "", "dim")
    caption.append(f"\n(narrower than the table's columns: one per line; COLUMNS={width})", style="dim")
    return Group(*parts, Text(""), caption)


def _as_text(cell: Any, style: str = "") -> Text:
    """A cell (a string or a ``Text``) as a ``Text``: a string escaped (``printable``), never markup."""
    if isinstance(cell, Text):
        return cell.copy() if not style else Text.assemble(cell, style=style)
    return Text(printable(str(cell)), style=style)


def fit_widths(console: Console, table: Table, width: int) -> bool:
    """Fix each column's width so that ``table`` is at most ``width`` wide, or say it cannot be.

    A column needs its minimum and would like its natural width; what is left over the minimums
    goes first to the columns that need least to be whole (water-filling). The minimum: its
    ``min_width`` if it has one (a label or a path folds past it), else its longest word (whole
    cells if it is ``no_wrap``), and never less than its header's longest word, so a header breaks
    between words. rich's own squeezing shrinks every column evenly, below its minimum, and then
    the minimum pushes the table past the console, where it would be cropped: hence fixed widths."""
    options = console.options.update(max_width=1_000_000)
    ranges = []
    for column in table.columns:
        head = Measurement.get(console, options, column.header)
        cells = [Measurement.get(console, options, cell) for cell in column.cells]
        if column.min_width is not None:
            own = column.min_width
        else:
            own = max((m.maximum if column.no_wrap else m.minimum for m in cells), default=1)
        low = max(own, head.minimum)
        ranges.append((low, max([low, head.maximum, *(m.maximum for m in cells)])))
    _, right, _, left = table.padding
    frame = (2 if table.show_edge else 0) + (len(ranges) - 1 if table.box else 0) + (left + right) * len(ranges)
    spare = width - frame - sum(low for low, _ in ranges)
    if spare < 0:
        return False
    widths = [low for low, _ in ranges]
    by_need = sorted(range(len(ranges)), key=lambda j: ranges[j][1] - ranges[j][0])
    for k, j in enumerate(by_need):
        give = min(ranges[j][1] - widths[j], spare // (len(ranges) - k))
        widths[j] += give
        spare -= give
    for column, fixed in zip(table.columns, widths, strict=True):
        column.width = fixed
    return True
