"""The simulated cache table: one keyed row per query, only changed cells redrawn."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import DataTable

from bbb_tui.cache import Query, QueryCache, QueryStatus, key_label
from bbb_tui.monitor import clock_time

STATUS_STYLES = {
    QueryStatus.FRESH: "#98c379",
    QueryStatus.STALE: "#e5c07b",
    QueryStatus.FETCHING: "bold #61afef",
}
#: Column names and fixed widths; ``data`` (None) grows with its content.
COLUMN_WIDTHS: dict[str, int | None] = {
    "query key": 24,
    "status": 8,
    "invalidated": 11,
    "fetches": 7,
    "last fetch": 12,
    "took": 6,
    "data": None,
}
COLUMNS = tuple(COLUMN_WIDTHS)


class QueryTable(DataTable[str | Text]):
    """Rows keyed by query key; :meth:`sync` applies what the cache says changed."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._clock = clock
        self._wallclock = wallclock
        self._cells: dict[str, tuple[str | Text, ...]] = {}

    def on_mount(self) -> None:
        for name, width in COLUMN_WIDTHS.items():
            self.add_column(name, width=width, key=name)

    def sync(self, cache: QueryCache) -> None:
        """Add new rows, drop evicted ones, and update the cells that changed."""
        for key in cache.removed:
            label = key_label(key)
            if label in self._cells:
                self.remove_row(label)
                del self._cells[label]
        cache.removed.clear()
        if cache.changed:
            # In cache order, so new rows appear base keys first, then per-id keys by age.
            for query in [q for k, q in cache.queries.items() if k in cache.changed]:
                self._show(query)
            cache.changed.clear()

    def _show(self, query: Query) -> None:
        label = key_label(query.key)
        cells = self._row(query)
        old = self._cells.get(label)
        if old is None:
            self.add_row(*cells, key=label)
        else:
            for column, new, before in zip(COLUMNS, cells, old, strict=True):
                if new != before:
                    self.update_cell(label, column, new, update_width=column == "data")
        self._cells[label] = cells

    def _row(self, query: Query) -> tuple[str | Text, ...]:
        last = "-"
        if query.last_fetched is not None:
            wall = self._wallclock() - (self._clock() - query.last_fetched)
            last = clock_time(wall)
        took = "-" if query.last_duration is None else f"{query.last_duration * 1000:.0f}ms"
        status = Text(query.status.value, style=STATUS_STYLES[query.status])
        return (
            key_label(query.key),
            status,
            str(query.invalidations),
            str(query.fetches),
            last,
            took,
            query.data,
        )
