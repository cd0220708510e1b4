"""The simulated cache table: one line per query, redrawn only when a row changed.

The four list queries have a row each. Per-id queries (``jobs/single <id>``,
``jobs/logs <id>``) come and go by the hundred in a burst, so they are shown in a
fixed number of slots, most recently invalidated first.

Not a DataTable: under a burst every slot changes on every redraw, and DataTable
re-rendered its 16x7 cells in 40-70 ms a time on our machines (a seventh of a core
at four redraws a second). Here the rows are one Rich ``Text`` with fixed-width
columns, rebuilt only when a row's cells changed: a few milliseconds.

Keys and data hold job ids and queue names from the wire: every cell is sanitized and
cut to its column in terminal cells (:func:`bbb_tui.widgets.safe.safe_text`), ids in
the middle so that two long ids with a common prefix still look different.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from rich.text import Text
from textual.widget import Widget

from bbb_tui.cache import BASE_KEYS, Query, QueryCache, QueryStatus, key_label
from bbb_tui.monitor import clock_time
from bbb_tui.widgets.safe import safe_text
from bridge.core.sanitize import sanitize

STATUS_STYLES = {
    QueryStatus.FRESH: "#98c379",
    QueryStatus.STALE: "#e5c07b",
    QueryStatus.FETCHING: "bold #61afef",
}
#: Column names and widths; ``data`` takes what is left of the line.
COLUMN_WIDTHS: dict[str, int] = {
    "query key": 26,
    "status": 9,
    "invalidated": 12,
    "fetches": 8,
    "last fetch": 13,
    "took": 6,
    "data": 0,
}
COLUMNS = tuple(COLUMN_WIDTHS)
Cells = tuple[str, ...]
_HEADER_STYLE = "bold"
_STATUSES = {status.value for status in QueryStatus}


class QueryTable(Widget):
    """Rows keyed by base query key or per-id slot; :meth:`sync` applies what changed."""

    DEFAULT_CSS = """
    QueryTable { height: auto; overflow: hidden; }
    """

    def __init__(
        self,
        *,
        id_slots: int = 12,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.id_slots = id_slots
        self._clock = clock
        self._wallclock = wallclock
        self._cells: dict[str, Cells] = {}  # row key -> what it shows, in display order
        self._text = Text()
        self._zebra = ""  # every other row's background (see _retheme)

    def cells(self, row: str) -> dict[str, str]:
        """What row ``row`` (a base key label or ``slot-N``) shows, by column name."""
        return dict(zip(COLUMNS, self._cells[row], strict=True))

    def sync(self, cache: QueryCache) -> None:
        """Show the base queries that changed, and the most recent per-id queries in the slots."""
        changed = cache.changed
        if not changed:
            return
        dirty = False
        for key in BASE_KEYS:
            if key in changed:
                dirty |= self._show(key_label(key), cache.base[key])
        if any(len(key) > 1 for key in changed):
            recent = itertools.islice(reversed(cache.per_id.values()), self.id_slots)
            for slot, query in enumerate(recent):
                dirty |= self._show(f"slot-{slot}", query)
        changed.clear()
        if dirty:
            self._text = self._build()
            self.refresh()  # the app's CSS fixes the height: no relayout

    def on_resize(self) -> None:
        self._text = self._build()

    def render(self) -> Text:
        return self._text

    def _show(self, row: str, query: Query) -> bool:
        cells = self._row(query)
        if self._cells.get(row) == cells:
            return False
        self._cells[row] = cells
        return True

    def _build(self) -> Text:
        """All rows as one Text, each line exactly the widget's width in cells."""
        width = max(self.size.width, 40)
        text = Text(end="")
        text.append_text(_line(COLUMNS, width, style=_HEADER_STYLE))
        for n, (_, cells) in enumerate(self._sorted_rows()):
            text.append("\n")
            text.append_text(_line(cells, width, style=self._zebra if n % 2 else ""))
        return text

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._retheme)

    def _retheme(self) -> None:
        """Every other row's background: the theme's panel colour (dark or light alike),
        looked up when the theme changes, not on every redraw."""
        panel = self.app.get_css_variables().get("panel")
        self._zebra = f"on {panel}" if panel else ""
        self._text = self._build()
        self.refresh()

    def _sorted_rows(self) -> list[tuple[str, Cells]]:
        base = [
            (key_label(k), self._cells[key_label(k)])
            for k in BASE_KEYS
            if key_label(k) in self._cells
        ]
        slots = [
            (f"slot-{n}", self._cells[f"slot-{n}"])
            for n in range(self.id_slots)
            if f"slot-{n}" in self._cells
        ]
        return base + slots

    def _row(self, query: Query) -> Cells:
        last = "-"
        if query.last_fetched is not None:
            last = clock_time(self._wallclock() - (self._clock() - query.last_fetched))
        took = "-" if query.last_duration is None else f"{query.last_duration * 1000:.0f}ms"
        return (
            sanitize(key_label(query.key)),
            query.status.value,
            str(query.invalidations),
            str(query.fetches),
            last,
            took,
            sanitize(query.data),
        )


def _line(cells: tuple[str, ...], width: int, *, style: str) -> Text:
    """One row: each cell cut and padded to its column (in cells), exactly ``width`` cells."""
    fixed = sum(COLUMN_WIDTHS.values())
    line = Text(" ", style=style, end="")
    for (name, column), cell in zip(COLUMN_WIDTHS.items(), cells, strict=True):
        size = column or max(width - 1 - fixed, 0)  # the data column takes the rest
        shown = safe_text(  # ids are cut in the middle: they differ at their ends
            cell, max(size - 1, 0), where="middle" if name == "query key" else "end"
        )
        if name == "status" and cell in _STATUSES:
            shown.stylize(STATUS_STYLES[QueryStatus(cell)], 0, len(cell))
        line.append_text(shown)
        line.append(" " if size else "")
    line.truncate(width, pad=True)
    return line
