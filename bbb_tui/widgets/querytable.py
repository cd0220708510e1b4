"""The simulated cache table: fixed rows updated in place, only changed cells redrawn.

The four list queries have a row each. Per-id queries (``jobs/single <id>``,
``jobs/logs <id>``) come and go by the hundred in a burst, so they are shown in a
fixed number of slots, most recently invalidated first: rows are never removed,
which keeps DataTable's relayout off the hot path.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import DataTable

from bbb_tui.cache import BASE_KEYS, Query, QueryCache, QueryStatus, key_label
from bbb_tui.monitor import clock_time

STATUS_STYLES = {
    QueryStatus.FRESH: "#98c379",
    QueryStatus.STALE: "#e5c07b",
    QueryStatus.FETCHING: "bold #61afef",
}
#: Column names and fixed widths (fixed: no width recomputation as values change).
COLUMN_WIDTHS: dict[str, int] = {
    "query key": 26,
    "status": 8,
    "invalidated": 11,
    "fetches": 7,
    "last fetch": 12,
    "took": 5,
    "data": 32,  # the row fits 120 columns; narrower terminals scroll sideways
}
COLUMNS = tuple(COLUMN_WIDTHS)
Cells = tuple[str | Text, ...]


class QueryTable(DataTable[str | Text]):
    """Rows keyed by base query key or per-id slot; :meth:`sync` applies what changed."""

    def __init__(
        self,
        *,
        id_slots: int = 12,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.id_slots = id_slots
        self._clock = clock
        self._wallclock = wallclock
        self._cells: dict[str, Cells] = {}  # row key -> what it shows

    def on_mount(self) -> None:
        for name, width in COLUMN_WIDTHS.items():
            self.add_column(name, width=width, key=name)

    def sync(self, cache: QueryCache) -> None:
        """Show the base queries that changed, and the most recent per-id queries in the slots."""
        changed = cache.changed
        if not changed and not cache.removed:
            return
        for key in BASE_KEYS:
            if key in changed:
                self._show(key_label(key), cache.base[key])
        if any(len(key) > 1 for key in changed) or cache.removed:
            recent = itertools.islice(reversed(cache.per_id.values()), self.id_slots)
            for slot, query in enumerate(recent):
                self._show(f"slot-{slot}", query)
        changed.clear()
        cache.removed.clear()

    def _show(self, row: str, query: Query) -> None:
        cells = self._row(query)
        old = self._cells.get(row)
        if old is None:
            self.add_row(*cells, key=row)
        elif old != cells:
            for column, new, before in zip(COLUMNS, cells, old, strict=True):
                if new != before:
                    self.update_cell(row, column, new)
        self._cells[row] = cells

    def _row(self, query: Query) -> Cells:
        last = "-"
        if query.last_fetched is not None:
            last = clock_time(self._wallclock() - (self._clock() - query.last_fetched))
        took = "-" if query.last_duration is None else f"{query.last_duration * 1000:.0f}ms"
        return (
            key_label(query.key),
            Text(query.status.value, style=STATUS_STYLES[query.status]),
            str(query.invalidations),
            str(query.fetches),
            last,
            took,
            query.data,
        )
