"""The real-data views (``--data bullmq``): queues with live counts and timings, the latest
jobs, and one job's details. Queue names, job names, data, errors and logs come from
Redis: every cell and line goes through :func:`~bbb_tui.widgets.safe.safe_text`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from bbb_tui.bullmq_data import JobDetails, JobSummary
from bbb_tui.queue_stats import QueueRow, duration
from bbb_tui.widgets.querytable import sort_mark
from bbb_tui.widgets.safe import safe_text
from bbb_tui.widgets.themed import Palette, palette, palette_of

#: Each job state's meaning: a role of the theme's palette (widgets/themed.py).
STATE_ROLES = {"active": "busy", "completed": "ok", "failed": "error", "delayed": "warn"}
DEFAULT_PALETTE = palette({})  # no theme: plain text, still readable
NAME_WIDTH = 24
#: Characters and lines of one field the job screen shows at most.
MAX_FIELD = 20_000
MAX_LINES = 400


def cursor_key(table: DataTable[Text]) -> str | None:
    """The key of the row under the cursor (None on an empty table)."""
    if not table.row_count or not table.is_valid_row_index(table.cursor_row):
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def put_cursor(table: DataTable[Text], key: str | None) -> None:
    """Back on the row ``key``, if it is still there (a redraw keeps your place)."""
    if key is not None and key in table.rows:
        table.move_cursor(row=table.get_row_index(key), animate=False)


def fitting(widths: dict[str, int], drop_first: tuple[str, ...], width: int) -> tuple[str, ...]:
    """The columns (of ``widths``: name -> usual cells, padding included) that fit in
    ``width``, dropping ``drop_first`` in order until they do."""
    shown = list(widths)
    for name in drop_first:
        if sum(widths[n] for n in shown) <= width:
            break
        shown.remove(name)
    return tuple(shown)


#: One row of a view: its key, its cells by column, and what each column sorts by.
Row = tuple[str, dict[str, Text], dict[str, Any]]


class FittingTable(DataTable[Text]):
    """A row-cursor DataTable whose least useful columns go first on a narrow screen, and
    that sorts by any column (``o`` the next one, ``O`` reversed, or a click on a header),
    keeping the cursor on its row as the rows are redrawn."""

    BINDINGS = [
        Binding("o", "sort(1)", "sort", show=False),
        Binding("O", "reverse", "reverse", show=False),
    ]
    #: Each column and the cells it usually takes (padding included), in display order.
    WIDTHS: dict[str, int] = {}
    DROP_FIRST: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    sort_column: str | None = None  # None: the order the rows came in
    sort_reverse = False
    _rows: list[Row] = []  # replaced, never changed in place

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._columns(tuple(self.WIDTHS))

    def on_resize(self) -> None:
        shown = fitting(self.WIDTHS, self.DROP_FIRST, self.size.width)
        if shown != self.shown:
            self._columns(shown)

    def _columns(self, shown: tuple[str, ...]) -> None:
        self.shown = shown
        self.clear(columns=True)
        for name in shown:
            mark = sort_mark(name, self.sort_column, self.sort_reverse)
            self.add_column(f"{name} {mark}" if mark else name, key=name)
        self._fill()

    def fill(self, rows: list[Row]) -> None:
        """Show ``rows`` (in the chosen order); the cursor stays on its row if still there."""
        self._rows = rows
        self._fill()

    def _fill(self) -> None:
        chosen = cursor_key(self)
        self.clear()
        rows = self._rows
        column = self.sort_column
        if column is not None:
            rows = sorted(rows, key=lambda row: row[2][column], reverse=self.sort_reverse)
        elif self.sort_reverse:
            rows = rows[::-1]
        for key, cells, _ in rows:
            self.add_row(*(cells[name] for name in self.shown), key=key)
        put_cursor(self, chosen)

    def action_sort(self, step: int) -> None:
        names: list[str | None] = [None, *self.shown]
        index = names.index(self.sort_column) if self.sort_column in names else 0
        self.sort_column, self.sort_reverse = names[(index + step) % len(names)], False
        self._columns(self.shown)

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._columns(self.shown)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by its column; a second click reverses."""
        column = event.column_key.value
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._columns(self.shown)


def _natural(text: str) -> tuple[int, int, str]:
    """Job ids in the order people expect: 9 before 10, numbers before names."""
    return (0, int(text), "") if text.isdigit() and len(text) < 20 else (1, 0, text.casefold())


class QueuesView(FittingTable):
    """One row per queue: counts per state, paused, per minute, wait and run times."""

    WIDTHS = {
        "queue": 12, "wait": 7, "active": 8, "delayed": 9, "failed": 8, "done": 7,
        "paused": 8, "done/min": 10, "fail/min": 10, "wait p50/p95": 17, "run p50/p95": 15,
        "alarms": 12,
    }  # fmt: skip
    DROP_FIRST = ("done/min", "fail/min", "paused", "delayed", "run p50/p95", "wait p50/p95")
    COLUMNS = tuple(WIDTHS)

    def show(self, rows: list[QueueRow]) -> None:
        roles = palette_of(self.app)
        alarm = roles["alarm"]
        shown = []
        for row in rows:
            counts = row.counts.counts
            alarms = []
            if row.counts.paused and "paused" not in self.shown:  # said here instead
                alarms.append("paused")
            if row.stalled:
                alarms.append(f"{row.stalled} stalled")
            if row.exhausted:
                alarms.append(f"{row.exhausted} exhausted")  # their retries
            if row.growing:
                alarms.append("backlog \N{UPWARDS ARROW}")
            style = alarm if row.alarming else ""
            cells = [
                safe_text(row.name, NAME_WIDTH, style=style, where="middle", pad=False),
                Text(f"{row.counts.backlog:,}", style=alarm if row.growing else ""),
                Text(f"{counts['active']:,}"),
                Text(f"{counts['delayed']:,}"),
                Text(f"{counts['failed']:,}", style=roles["error"] if counts["failed"] else ""),
                Text(f"{counts['completed']:,}"),
                Text("paused" if row.counts.paused else "", style=roles["warn"]),
                Text(f"{row.completed_per_min:,}"),
                Text(f"{row.failed_per_min:,}", style=alarm if row.failed_per_min else ""),
                Text(f"{duration(row.wait_p50)} / {duration(row.wait_p95)}"),
                Text(f"{duration(row.run_p50)} / {duration(row.run_p95)}"),
                Text(", ".join(alarms), style=alarm),
            ]
            order = [
                _natural(row.name), row.counts.backlog, counts["active"], counts["delayed"],
                counts["failed"], counts["completed"], row.counts.paused, row.completed_per_min,
                row.failed_per_min, row.wait_p95 or -1, row.run_p95 or -1,
                (row.alarming, len(alarms)),
            ]  # fmt: skip
            shown.append(
                (
                    row.name,
                    dict(zip(self.COLUMNS, cells, strict=True)),
                    dict(zip(self.COLUMNS, order, strict=True)),
                )
            )
        self.fill(shown)


class JobsView(FittingTable):
    """The latest jobs across queues; Enter opens one."""

    WIDTHS = {"job": 12, "queue": 12, "name": 14, "state": 11, "attempts": 10, "age": 8}
    DROP_FIRST = ("attempts", "age")
    COLUMNS = tuple(WIDTHS)
    _jobs: dict[str, JobSummary] = {}  # replaced, never changed in place

    class Chosen(Message):
        def __init__(self, queue: str, job: str) -> None:
            super().__init__()
            self.queue, self.job = queue, job

    def show(self, jobs: list[JobSummary], now_ms: int | None = None) -> None:
        """Redraw with ``jobs``; the cursor stays on the job it was on, if still listed."""
        now_ms = now_ms or int(time.time() * 1000)
        roles = palette_of(self.app)
        self._jobs = {f"{job.queue}\0{job.id}": job for job in jobs}
        rows = []
        for key, job in self._jobs.items():
            cells = {
                "job": safe_text(job.id, 16, where="middle", pad=False),
                "queue": safe_text(job.queue, NAME_WIDTH, where="middle", pad=False),
                "name": safe_text(job.name, NAME_WIDTH, pad=False),
                "state": Text(job.state, style=roles.get(STATE_ROLES.get(job.state, ""), "")),
                "attempts": Text(str(job.attempts)),
                "age": Text(duration(max(now_ms - job.timestamp, 0)) if job.timestamp else "-"),
            }
            order = {
                "job": _natural(job.id),
                "queue": _natural(job.queue),
                "name": job.name.casefold(),
                "state": job.state,
                "attempts": job.attempts,
                "age": -(job.timestamp or 0),
            }
            rows.append((key, cells, order))
        self.fill(rows)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        job = self._jobs.get(event.row_key.value or "")
        if job is not None:
            self.post_message(self.Chosen(job.queue, job.id))


class JobScreen(ModalScreen[None]):
    """One job, whole: state, attempts, timings, data, options, result or failure with its
    stack trace, and its log lines; read when opened, ``r`` reads it again."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(
        self, queue: str, job: str, load: Callable[[str, str], Awaitable[JobDetails | None]]
    ) -> None:
        super().__init__()
        self.queue, self.job, self._load = queue, job, load

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="job-box"):
            yield Static(safe_text(f"job {self.job} of {self.queue}: reading..."), id="job-body")
            yield Static(Text("r reads it again, escape closes", style="dim italic"))

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.run_worker(self._show(), exclusive=True, exit_on_error=False)

    async def _show(self) -> None:
        body = self.query_one("#job-body", Static)
        try:
            details = await self._load(self.queue, self.job)
        except Exception as exc:  # Redis gone, bullmq missing: said, not raised
            body.update(safe_text(f"cannot read job {self.job}: {exc}"))
            return
        if details is None:
            body.update(safe_text(f"job {self.job} of {self.queue}: no such job (removed?)"))
            return
        try:
            body.update(job_table(details, palette_of(self.app)))
        except Exception as exc:  # odd values a job hash may hold: said, not raised
            body.update(safe_text(f"cannot show job {self.job}: {exc}"))


def job_fields(details: JobDetails, roles: Palette = DEFAULT_PALETTE) -> list[tuple[str, Text]]:
    """The job screen's lines: every value from Redis sanitized (lines kept, controls not)."""
    job = details.summary
    fields: list[tuple[str, Text]] = []

    def field(label: str, value: str, style: str | Style = "") -> None:
        if len(value) > MAX_FIELD:  # a 5 MB payload is not read on a screen
            value = f"{value[:MAX_FIELD]}\n… {len(value) - MAX_FIELD:,} more characters"
        lines = [safe_text(line, style=style) for line in value.splitlines()[:MAX_LINES] or [""]]
        fields.append((label, Text("\n").join(lines)))

    field("job", job.id)
    field("queue", job.queue)
    field("name", job.name)
    field("state", job.state, roles.get(STATE_ROLES.get(job.state, ""), ""))
    field("attempts", str(job.attempts))
    field("added", _when(job.timestamp))
    field("processed", _when(details.processed_on))
    field("finished", _when(details.finished_on))
    if details.processed_on and details.finished_on:
        field("ran", duration(details.finished_on - details.processed_on))
    field("progress", details.progress)
    field("data", details.data)
    field("opts", details.opts)
    if details.returnvalue not in ("", "null", "None"):
        field("result", details.returnvalue)
    if details.failed_reason:  # of the last failed attempt, which may not be the last one
        label = "failed" if job.state == "failed" else "failed before"
        field(label, details.failed_reason, roles["error"])
    for n, trace in enumerate(details.stacktrace[-3:]):
        field("stack" if n == 0 else "", trace, "dim")
    field("logs", "\n".join(details.logs[-100:]) or "(none)")
    return fields


def job_table(details: JobDetails, roles: Palette = DEFAULT_PALETTE) -> Table:
    """The job screen: labels on the left, values wrapped in their own column."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style=roles["key"], no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in job_fields(details, roles):
        table.add_row(label, value)
    return table


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    except (OverflowError, OSError, ValueError):  # a time no calendar holds: shown as is
        return f"{ms} ms"
    return f"{when}.{ms % 1000:03d}"
