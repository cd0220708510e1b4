"""The cache table: one line per query in use, scrollable, sortable, with a cursor.

The four list queries, then every per-id query the cache holds (``jobs/single <id>``,
``jobs/logs <id>``; they come and go by the hundred in a burst), most recently
invalidated first unless another order is chosen (``o`` cycles the column, ``O``
reverses, a click on a header sorts by it). Enter (or a double click) on a row asks
for that key's history (:class:`Opened`).

Not a DataTable: under a burst every row changes on every redraw, and DataTable
re-rendered its cells in 40-70 ms a time on our machines (a seventh of a core at four
redraws a second). Here only the rows on the screen are drawn, each one Rich ``Text``
with fixed-width columns, cached until its cells change: a few milliseconds.

Keys and data hold job ids and queue names from the wire: every cell is sanitized and
cut to its column in terminal cells (:func:`bbb_tui.widgets.safe.safe_text`), ids in
the middle so that two long ids with a common prefix still look different.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from bbb_tui.cache import BASE_KEYS, Query, QueryCache, QueryStatus, key_label
from bbb_tui.monitor import clock_time
from bbb_tui.widgets.safe import safe_text
from bbb_tui.widgets.themed import cursor_style, palette_of
from bridge.core.protocol import QueryKey
from bridge.core.sanitize import fit

#: Each status's meaning (a palette role) and whether it is bold (readable with NO_COLOR).
STATUS_ROLES = {
    QueryStatus.FRESH: ("ok", False),
    QueryStatus.STALE: ("warn", False),
    QueryStatus.FETCHING: ("busy", True),
}
#: Column names and widths; 0: ``query key`` takes 30% of the line (16 to 34 cells),
#: ``data`` what is left.
COLUMN_WIDTHS: dict[str, int] = {
    "query key": 0,
    "status": 9,
    "invalidated": 12,
    "fetches": 8,
    "last fetch": 13,
    "took": 6,
    "data": 0,
}
COLUMNS = tuple(COLUMN_WIDTHS)
#: On a narrow screen these go first, in this order, until ``data`` has MIN_DATA cells.
DROP_FIRST = ("took", "last fetch", "fetches", "invalidated")
MIN_DATA = 24
MAX_CELL = 300  # cells of a key or data kept per row (a screen is narrower)
Cells = tuple[str, ...]
SortKey = tuple[Any, ...]  # per column: str, int or float
_STATUS_ORDER = {QueryStatus.FETCHING: 0, QueryStatus.STALE: 1, QueryStatus.FRESH: 2}
_STATUSES = {status.value for status in QueryStatus}


def sort_mark(name: str, sort_column: str | None, reverse: bool) -> str:
    """The header's mark on the column the rows are sorted by: ▴ ascending, ▾ reversed."""
    if name != sort_column:
        return ""
    return (
        "\N{BLACK DOWN-POINTING SMALL TRIANGLE}"
        if reverse
        else "\N{BLACK UP-POINTING SMALL TRIANGLE}"
    )


def layout(width: int) -> list[tuple[str, int]]:
    """The columns shown in ``width`` cells, with their widths."""
    key = min(max(width * 3 // 10, 16), 34)
    shown = list(COLUMNS)
    for drop in (None, *DROP_FIRST):
        if drop is not None:
            shown.remove(drop)
        fixed = key + sum(COLUMN_WIDTHS[name] for name in shown)
        if width - fixed >= MIN_DATA:
            break
    sizes = {"query key": key, "data": max(width - fixed, 0)}
    return [(name, sizes.get(name) or COLUMN_WIDTHS[name]) for name in shown]


class QueryTable(ScrollView, can_focus=True):
    """Rows keyed by query key label; :meth:`sync` applies what changed in the cache."""

    DEFAULT_CSS = """
    QueryTable { scrollbar-size-horizontal: 0; }
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "up", show=False, tooltip="the row above"),
        Binding("down,j", "cursor(1)", "down", show=False, tooltip="the row below"),
        Binding("pageup", "page(-1)", "page up", show=False, tooltip="a page up"),
        Binding("pagedown", "page(1)", "page down", show=False, tooltip="a page down"),
        Binding("home,g", "cursor_to(0)", "first", show=False, tooltip="the first row"),
        Binding("end,G", "cursor_to(-1)", "last", show=False, tooltip="the last row"),
        Binding("enter", "open", "history", show=False,
                tooltip="the selected key's last fetches, with what led to each"),
        Binding("o", "sort(1)", "sort", show=False,
                tooltip="sort by the next column (or click a header; again: reversed)"),
        Binding("O", "reverse", "reverse", show=False, tooltip="reverse the order"),
    ]  # fmt: skip

    class Opened(Message):
        """Enter on a row: the app shows that key's history."""

        def __init__(self, key: QueryKey) -> None:
            super().__init__()
            self.key = key

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._wallclock = wallclock
        self._rows: dict[str, tuple[QueryKey, Cells, SortKey]] = {}  # by key label
        self._order: list[str] = []  # labels, as shown
        self._per_id: list[str] = []  # per-id labels, most recently invalidated first
        self.sort_column: str | None = None  # None: list queries, then newest per-id
        self.sort_reverse = False
        self._cursor_key: str | None = None
        self._strips: dict[tuple[str, int], Strip] = {}  # (label, width) -> drawn row
        self._zebra = Style()
        self._cursor = Style(reverse=True)

    # -- data ----------------------------------------------------------------------

    def cells(self, label: str) -> dict[str, str]:
        """What the row of ``label`` (``jobs/table``, ``jobs/single 7``) shows, by column."""
        return dict(zip(COLUMNS, self._rows[label][1], strict=True))

    @property
    def order(self) -> list[str]:
        """The row labels, top to bottom."""
        return self._order

    def sync(self, cache: QueryCache) -> None:
        """Take the rows that changed (and every per-id row, as they come and go)."""
        changed = cache.changed
        if not changed:
            return
        rows = self._rows
        for key in BASE_KEYS:
            if key in changed or key_label(key) not in rows:
                self._take(key, cache.base[key])
        if any(len(key) > 1 for key in changed):
            kept = set()
            per_id = []
            for key, query in reversed(cache.per_id.items()):
                label = key_label(key)
                if key in changed or label not in rows:
                    self._take(key, query)
                kept.add(label)
                per_id.append(label)
            for label in [label for label in self._per_id if label not in kept]:
                del rows[label]
            self._per_id = per_id
        changed.clear()
        self._reorder()

    def _take(self, key: QueryKey, query: Query) -> None:
        label = key_label(key)
        cells, sort = self._row(query)
        old = self._rows.get(label)
        if old is None or old[1] != cells:
            self._rows[label] = (key, cells, sort)
            self._strips = {k: v for k, v in self._strips.items() if k[0] != label}

    def _row(self, query: Query) -> tuple[Cells, SortKey]:
        last = "-"
        if query.last_fetched is not None:
            last = clock_time(self._wallclock() - (self._clock() - query.last_fetched))
        took = "-" if query.last_duration is None else f"{query.last_duration * 1000:.0f}ms"
        # Cut before made safe: a 1 MB id costs what a short one does (cells cut it anyway).
        label = fit(key_label(query.key), MAX_CELL, where="middle", pad=False)
        cells = (
            label,
            query.status.value,
            str(query.invalidations),
            str(query.fetches),
            last,
            took,
            fit(query.data, MAX_CELL, pad=False),
        )
        sort = (
            label,
            _STATUS_ORDER[query.status],
            query.invalidations,
            query.fetches,
            -math.inf if query.last_fetched is None else query.last_fetched,
            -1.0 if query.last_duration is None else query.last_duration,
            cells[6],
        )
        return cells, sort

    def _reorder(self) -> None:
        base = [key_label(k) for k in BASE_KEYS]
        order = base + self._per_id
        if self.sort_column is not None:
            column = COLUMNS.index(self.sort_column)
            order.sort(key=lambda label: self._rows[label][2][column], reverse=self.sort_reverse)
        elif self.sort_reverse:
            order.reverse()
        if order != self._order:
            resized = len(order) != len(self._order)
            self._order = order
            self._strips.clear()  # the zebra follows the position
            self.virtual_size = Size(self.size.width, len(order) + 1)
            if resized:
                self.refresh(layout=True)  # its height follows its rows, up to its share
        self.refresh()  # the view stays where it is: only a move or a sort chases the cursor

    # -- drawing -------------------------------------------------------------------

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._retheme)

    def _retheme(self) -> None:
        variables = self.app.get_css_variables()
        panel = variables.get("panel")
        self._zebra = Style.parse(f"on {panel}") if panel and not self.app.no_color else Style()
        self._cursor = cursor_style(variables, no_color=self.app.no_color)
        self._strips.clear()
        self.refresh()

    def on_resize(self) -> None:
        self._strips.clear()
        self.virtual_size = Size(self.size.width, len(self._order) + 1)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._strip(self._header(), width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self._order):
            return Strip.blank(width, self.rich_style)
        label = self._order[index]
        cursor = self.has_focus and label == self._cursor_key
        cache_key = (label, width)
        if not cursor and cache_key in self._strips:
            return self._strips[cache_key]
        style = self._cursor if cursor else self._zebra if index % 2 else Style()
        strip = self._strip(self._line(self._rows[label][1], width, style), width)
        if not cursor:
            self._strips[cache_key] = strip
        return strip

    def _strip(self, text: Text, width: int) -> Strip:
        text.stylize_before(self.rich_style)
        return Strip(text.render(self.app.console), width)

    def _header(self) -> Text:
        names = [
            f"{name}{sort_mark(name, self.sort_column, self.sort_reverse)}" for name in COLUMNS
        ]
        return self._line(tuple(names), self.size.width, Style(bold=True))

    def _line(self, cells: Cells, width: int, style: Style) -> Text:
        """One row: each cell cut and padded to its column (in cells), exactly ``width``."""
        roles = palette_of(self.app)
        by_name = dict(zip(COLUMNS, cells, strict=True))
        line = Text(" ", end="")
        for name, size in layout(max(width - 1, 0)):
            cell = by_name[name]
            shown = safe_text(  # ids are cut in the middle: they differ at their ends
                cell, max(size - 1, 0), where="middle" if name == "query key" else "end"
            )
            if name == "status" and cell in _STATUSES:
                role, bold = STATUS_ROLES[QueryStatus(cell)]
                shown.stylize(roles[role] + Style(bold=bold), 0, len(cell))
            line.append_text(shown)
            line.append(" " if size else "")
        line.truncate(width, pad=True)
        line.stylize(style)  # over the cells: a cursor row reads in one colour
        return line

    # -- moving about --------------------------------------------------------------

    @property
    def cursor(self) -> int | None:
        """The cursor's row (an index into :attr:`order`), None before any row."""
        if self._cursor_key in self._rows:
            return self._order.index(self._cursor_key)
        return None

    def _move_to(self, index: int) -> None:
        if not self._order:
            return
        index = min(max(index, 0), len(self._order) - 1)
        self._cursor_key = self._order[index]
        self._keep_cursor_visible()
        self.refresh()

    def _keep_cursor_visible(self) -> None:
        index = self.cursor
        if index is None:
            if self._cursor_key is not None and self._order:  # its key went: stay near
                self._cursor_key = None
            return
        top, height = self.scroll_offset.y, max(self.size.height - 1, 1)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        index = self.cursor
        self._move_to(self.scroll_offset.y if index is None else index + step)

    def action_page(self, step: int) -> None:
        index = self.cursor or 0
        self._move_to(index + step * max(self.size.height - 2, 1))

    def action_cursor_to(self, index: int) -> None:
        self._move_to(index if index >= 0 else len(self._order) - 1)

    def action_open(self) -> None:
        if self.cursor is None:  # from the palette, before any row was chosen: the first
            self._move_to(0)
        index = self.cursor
        if index is not None:
            self.post_message(self.Opened(self._rows[self._order[index]][0]))

    def action_sort(self, step: int) -> None:
        """Sort by the next column (``o``); after the last, back to the natural order."""
        names: list[str | None] = [None, *COLUMNS]
        self.sort_column = names[(names.index(self.sort_column) + step) % len(names)]
        self.sort_reverse = False
        self._resort()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._resort()

    def _resort(self) -> None:
        self._reorder()
        self._keep_cursor_visible()

    def on_click(self, event: events.Click) -> None:
        """A header sorts by its column (again: reversed); a row takes the cursor; a
        double click opens it."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x)
            if column is not None:
                if column == self.sort_column:
                    self.sort_reverse = not self.sort_reverse
                else:
                    self.sort_column, self.sort_reverse = column, False
                self._resort()
            return
        self._move_to(self.scroll_offset.y + offset.y - 1)
        if event.chain == 2:
            self.action_open()

    def _column_at(self, x: int) -> str | None:
        start = 1
        for name, size in layout(max(self.size.width - 1, 0)):
            if start <= x < start + size:
                return name
            start += size
        return None

    def on_focus(self) -> None:
        if self._cursor_key is None and self._order:
            self._cursor_key = self._order[min(self.scroll_offset.y, len(self._order) - 1)]
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
