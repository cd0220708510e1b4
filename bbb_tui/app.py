"""The bbb-tui application: compose, key bindings, the WebSocket worker and the flush clock."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from redis.exceptions import ResponseError
from textual.actions import parse
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static, TabbedContent, TabPane

from bbb_tui.bullmq_data import BullmqData, JobSummary
from bbb_tui.bullmq_workload import BullmqWorkload
from bbb_tui.cache import QueryCache
from bbb_tui.client import BridgeClient, ConnState, ConnStatus
from bbb_tui.details import copied_text, saved_lines
from bbb_tui.fetcher import Fetcher
from bbb_tui.monitor import KINDS, Entry, Monitor, NotKept, clock_time
from bbb_tui.publisher import TestEventPublisher
from bbb_tui.queue_stats import QueueRow, QueueStats
from bbb_tui.recording import BadRecording, Recorder, replay
from bbb_tui.screens import (
    PANES,
    DetailsScreen,
    FilterScreen,
    HelpScreen,
    HistoryScreen,
    SearchScreen,
    TokenScreen,
    binding_rows,
    search_pattern,
)
from bbb_tui.widgets.bullmq import JobScreen, JobsView, QueuesView
from bbb_tui.widgets.eventlog import EventLog
from bbb_tui.widgets.querytable import QueryTable
from bbb_tui.widgets.status import status_text
from bbb_tui.widgets.themed import palette_of
from bridge.checks import redact
from bridge.config import DEFAULT_REDIS_URL
from bridge.core.protocol import DEFAULT_PREFIX, DEFAULT_WEBSOCKET_URL, SEED_EVENTS, EventType
from bridge.core.sanitize import sanitize
from bridge.core.streams import DEFAULT_BULLMQ_PREFIX
from bridge.core.workload import MAX_RATE, MIN_RATE, Workload

#: Widgets are redrawn on this clock, never per message.
FLUSH_INTERVAL = 0.1
#: The cache table is redrawn at most this often: a DataTable repaint costs far more than
#: a log append, and fetch states a quarter of a second old are still current to a person.
TABLE_INTERVAL = 0.25
#: Under a flood (more new lines per flush than the log shows), the log redraws this
#: often instead (4 Hz): nobody reads 20,000 lines a second, and each redraw costs the same.
LOG_BUSY_INTERVAL = 0.25
#: Quit cleanly on these (the terminal restored): SIGTERM from a supervisor or `kill`,
#: SIGHUP when the terminal goes away. (Ctrl+C is a key here, not SIGINT.)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOP_GRACE = 3.0


def new_file(folder: Path, stem: str, suffix: str) -> tuple[Path, IO[str]]:
    """A file that did not exist: ``stem`` + ``suffix``, else ``stem-2`` + ``suffix``..."""
    for n in range(1, 1000):
        path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            return path, open(path, "x", encoding="utf-8")  # the caller closes it
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "a thousand files of that name exist", str(folder))


#: The actions that write to Redis: off (and hidden) with --read-only.
PUBLISHING_ACTIONS = frozenset({"fire", "fire_all"})


@dataclass(frozen=True, slots=True)
class TuiSettings:
    url: str = DEFAULT_WEBSOCKET_URL
    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    fetch_latency: float = 0.15
    log_lines: int = 2000
    token: str | None = None  # for a bridge run with --auth-secret
    token_file: str | None = None  # ...or a file holding it, read before every attempt
    read_only: bool = False  # no key publishes anything
    #: What the cache fetches: simulated, or bullmq (real data; "auto" is settled by the CLI).
    data: str = "simulated"
    bullmq_prefix: str = DEFAULT_BULLMQ_PREFIX
    theme: str | None = None  # a Textual theme's name (None: Textual's default)
    record: str | None = None  # append every received frame to this JSON Lines file
    replay: str | None = None  # play this recording back instead of connecting
    replay_speed: float = 1.0  # ... at this many times its pace (0: as fast as possible)
    save_dir: str | None = None  # where s saves the kept events (None: the working folder)


class BbbApp(App[None]):
    """Live event log, connection state and simulated cache of one bridge connection.

    ``connect=False`` leaves the WebSocket worker off, so tests can feed
    :attr:`monitor` and :meth:`on_status` themselves; ``clock``/``wallclock`` make
    every displayed time deterministic.
    """

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "bbb-tui"
    COMMAND_PALETTE_BINDING = "ctrl+p"  # every action by name (get_system_commands)
    #: Below 90 columns the rate sparkline gives its room to the status line.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]
    BINDINGS = [
        # The description is the footer's word; the tooltip is the help screen's line.
        Binding("question_mark", "help", "help", tooltip="this help"),
        Binding("q", "quit", "quit", tooltip="quit"),
        Binding("1", "fire(0)", "job", tooltip="publish job-refresh test-job-123 to Redis"),
        Binding("2", "fire(1)", "queue", tooltip="publish queue-refresh test-queue to Redis"),
        Binding(
            "3",
            "fire(2)",
            "sched",
            tooltip="publish job-scheduler-refresh test-scheduler-key to Redis",
        ),
        Binding("4", "fire(3)", "log", tooltip="publish log-refresh test-job-456 to Redis"),
        Binding("a", "fire_all", "all", tooltip="publish all four test events"),
        Binding(
            "r",
            "reconnect",
            "reconnect",
            tooltip="reconnect to the bridge now (also after it refused the connection)",
        ),
        Binding("t", "token", "token", tooltip="enter a new token and reconnect"),
        Binding("p", "toggle_pause", "pause", tooltip="pause / resume the event log"),
        Binding("c", "clear", "clear", tooltip="clear the event log"),
        Binding(
            "end,G",
            "follow",
            "follow",
            show=False,
            tooltip="follow the newest events again (scrolling up in the log stops following)",
        ),
        Binding("f", "filter", "filter", tooltip="filter the event log by kind"),
        Binding(
            "y",
            "copy_event",
            "copy",
            show=False,
            tooltip="copy the selected event's JSON frame (the newest with no line selected)",
        ),
        Binding(
            "s",
            "save",
            "save",
            tooltip="save the kept events (as filtered) to a JSON Lines file --replay reads",
        ),
        Binding(
            "slash",
            "search",
            "search",
            tooltip="search the event log (text or regex); n older match, N newer, escape clears",
        ),
        Binding("n", "next_match(-1)", "older match", show=False, tooltip="the older match"),
        Binding("N", "next_match(1)", "newer match", show=False, tooltip="the newer match"),
        Binding("escape", "clear_search", "clear search", show=False, tooltip="clear the search"),
        Binding(
            "v",
            "view",
            "view",
            tooltip="next view: queues, jobs, query cache (BullMQ data; Enter on a job opens it)",
        ),
        Binding("plus", "rate(1.5)", "faster", tooltip="demo: publish faster (x1.5)"),
        Binding("minus", "rate(0.6667)", "slower", tooltip="demo: publish slower (/1.5)"),
        Binding(
            "ctrl+c",
            "copy_or_quit",
            "quit",
            show=False,
            priority=True,
            tooltip="copy the text selected with the mouse; quit when none is",
        ),
    ]

    def __init__(
        self,
        settings: TuiSettings | None = None,
        *,
        connect: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        workload: Workload | BullmqWorkload | None = None,
    ) -> None:
        super().__init__()
        self.workload = workload  # the demo's publisher, whose rate + and - change
        self.settings = settings or TuiSettings()
        self._clock = clock
        self._wallclock = wallclock
        self._connect = connect
        self.real = self.settings.data == "bullmq"
        self.stats = QueueStats()
        if self.real:
            self.cache = QueryCache(latency=None, facts=self.stats)
            self.data = BullmqData(self.settings.redis_url, self.settings.bullmq_prefix)
            self.fetcher: Fetcher | None = Fetcher(
                self.cache,
                self.data,
                self.stats,
                clock=clock,
                on_queues=self._show_queues,
                on_jobs=self._show_jobs,
            )
        else:
            self.cache = QueryCache(latency=self.settings.fetch_latency)
            self.fetcher = None
        self._queue_rows: list[QueueRow] | None = None
        self._jobs: list[JobSummary] | None = None
        #: While replaying, when the frames being shown arrived (their log lines say so).
        self._replayed_at: float | None = None
        self.monitor = Monitor(
            self.cache,
            capacity=self.settings.log_lines,
            clock=clock,
            wallclock=self._replay_time if self.settings.replay else wallclock,
        )
        self.publisher = TestEventPublisher(self.settings.redis_url, self.settings.prefix)
        self.recorder = Recorder(self.settings.record) if self.settings.record else None
        self.client = BridgeClient(
            self.settings.url,
            self._on_frames if self.recorder else self.monitor.feed_many,
            self.on_status,
            resume=self.monitor.resume_point,
            token=self.settings.token,
            token_file=self.settings.token_file,
            clock=clock,
        )
        self.status = self.client.status
        self._status_text = ""
        self._said_error = ""  # the last connection error the log said in full
        self._spark_second = -1
        self._table_at = float("-inf")
        self._log_at = float("-inf")
        self._refilter_on_resume = False
        self._search_text = ""  # the last search, offered again by /
        self._found: re.Pattern[str] | None = None
        self._match: int | None = None  # the line index shown
        self._match_text = ""

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Held as attributes: the flush must reach them even while a modal screen is on top.
        self.status_bar = Static(id="status")
        self.sparkline = Sparkline([0], id="rate")
        self.table = QueryTable(clock=self._clock, wallclock=self._wallclock, id="queries")
        self.event_log = EventLog(max_lines=self.settings.log_lines, id="log")
        with Horizontal(id="status-row"):
            yield self.status_bar
            yield self.sparkline
        if self.real:
            self.queues_view = QueuesView(id="queues-view")
            self.jobs_view = JobsView(id="jobs-view")
            with TabbedContent(id="views", initial="queues"):
                with TabPane("queues", id="queues"):
                    yield self.queues_view
                with TabPane("jobs", id="jobs"):
                    yield self.jobs_view
                with TabPane("query cache", id="cache"):
                    yield self.table
        else:
            yield self.table
        yield self.event_log
        yield Footer(compact=True, show_command_palette=False)  # its room goes to ? and q

    def on_mount(self) -> None:
        # Latency: a full collection scans every object, and with Textual's widget tree
        # that took up to ~80 ms under load here. Objects alive after start-up move to
        # the permanent generation, and young collections run less often while a burst
        # allocates millions of short-lived objects.
        if self.settings.theme:
            self.theme = self.settings.theme
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        self.table.border_title = (
            f"query cache (React Query semantics, BullMQ data under "
            f"{sanitize(self.settings.bullmq_prefix)}:)"
            if self.real
            else "query cache (simulated React Query)"
        )
        self.sparkline.tooltip = "events per second, last 60 s"
        self._update_log_title()
        self.cache.mount(self._clock())
        self.event_log.focus()  # j, k, Enter act on the log first; Tab goes to the table
        self.flush()
        self.set_interval(FLUSH_INTERVAL, self.flush)
        self._start_client()
        if not self.is_headless:  # a real terminal: leave it as it was found, whatever ends us
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self._stop_on_signal, sig)

    def _stop_on_signal(self, sig: signal.Signals) -> None:
        """Quit as ``q`` does; if the terminal is gone and restoring it hangs (Textual's
        writer can block on a closed terminal), leave anyway after STOP_GRACE seconds."""
        watchdog = threading.Timer(STOP_GRACE, os._exit, args=(128 + sig,))
        watchdog.daemon = True
        watchdog.start()
        self.exit()

    async def on_unmount(self) -> None:
        if not self.is_headless:
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        await self.publisher.aclose()
        if self.recorder is not None:
            self.recorder.close()
        if self.fetcher is not None:
            await self.fetcher.stop()
            await self.data.aclose()

    # -- fed from the WebSocket worker (plain calls; no widget work here) ----------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain, sanitized text: some carry what Redis or a bridge said."""
        super().notify(
            sanitize(message),
            title=sanitize(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def on_status(self, status: ConnStatus) -> None:
        previous, self.status = self.status, status
        if status.state is ConnState.CONNECTED:
            self._said_error = ""
        elif (
            status.error
            and status.error != self._said_error
            and status.state
            in (
                ConnState.CONNECTING,
                ConnState.RECONNECTING,
            )
        ):  # the whole error, once (the status line has room for its start only)
            self._said_error = status.error
            if previous.state is not ConnState.CONNECTED:  # else: "connection lost", below
                self.monitor.note(f"cannot connect to {status.url}: {status.error}; retrying")
        if status.state is previous.state:
            return
        self.refresh_bindings()  # t shows after a refusal
        if status.state is ConnState.CONNECTED:
            # Missed events are replayed by the bridge, or announced: the monitor sees which.
            reconnect = status.connections > 1
            self.monitor.connected(reconnect=reconnect)
            self.monitor.note(f"{'reconnected' if reconnect else 'connected'} to {status.url}")
        elif status.state is ConnState.RECONNECTING and previous.state is ConnState.CONNECTED:
            self.monitor.note(f"connection lost ({status.error}); reconnecting")
        elif status.state is ConnState.DISCONNECTED:
            self.monitor.note(f"disconnected: {status.error}; r tries again, t takes a new token")

    # -- the clock: everything reaches the widgets here ----------------------------

    def flush(self, *, force: bool = False) -> None:
        """Write new log lines in one batch, changed cache cells, and the status line.

        The table waits for TABLE_INTERVAL between redraws unless ``force`` is set.
        """
        now = self._clock()
        self.monitor.check()
        self.cache.tick(now)
        if self.fetcher is not None:
            self.fetcher.tick()
            self._sync_views()
        busy = self.monitor.pending > self.event_log.size.height
        if force or not busy or now - self._log_at >= LOG_BUSY_INTERVAL:
            self._log_at = now
            self.event_log.append(self.monitor.drain())
            self._update_log_title()  # new lines held, or unseen while looking back
        due = force or now - self._table_at >= TABLE_INTERVAL
        if self.cache.changed and due:
            self._table_at = now
            with self.batch_update():
                self.table.sync(self.cache)
        self._update_status(now)

    def _show_queues(self, rows: list[QueueRow]) -> None:
        self._queue_rows = rows  # drawn on the next flush

    def _show_jobs(self, jobs: list[JobSummary]) -> None:
        self._jobs = jobs

    def _sync_views(self) -> None:
        if self._queue_rows is not None:
            rows, self._queue_rows = self._queue_rows, None
            self.queues_view.show(rows)
        if self._jobs is not None:
            jobs, self._jobs = self._jobs, None
            self.jobs_view.show(jobs, int(self._wallclock() * 1000))

    def on_jobs_view_chosen(self, message: JobsView.Chosen) -> None:
        self.push_screen(JobScreen(message.queue, message.job, self.data.job))

    def action_view(self) -> None:
        """Show the next view: queues, jobs, query cache."""
        if not self.real:
            return
        tabs = self.query_one("#views", TabbedContent)
        order = ["queues", "jobs", "cache"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)]
        views = {"queues": self.queues_view, "jobs": self.jobs_view, "cache": self.table}
        views[tabs.active].focus()

    def _update_status(self, now: float) -> None:
        text = status_text(
            self.status,
            self.monitor,
            now,
            palette=palette_of(self),
            width=self.status_bar.size.width,
            read_only=self.settings.read_only,
            data="BullMQ data" if self.real else "simulated data",
        )
        shown = f"{self.theme}\0{text.plain}"
        if shown != self._status_text:
            self._status_text = shown
            self.status_bar.update(text, layout=False)  # fixed size: no relayout
        second = int(now)
        if second != self._spark_second:
            self._spark_second = second
            self.sparkline.data = self.monitor.rate.history(now)

    def _update_log_title(self) -> None:
        title = "events"
        if len(self.monitor.shown) < len(KINDS):
            title += f" (filter: {len(self.monitor.shown)} of {len(KINDS)} kinds)"
        if self.monitor.paused:
            title += f" - PAUSED, {self.monitor.held:,} new"
        elif self._match_text:
            title += f" - search {self._match_text} (n, N, escape)"
        elif not self.event_log.following:
            log = self.event_log
            where = [f"\N{DOWNWARDS ARROW} {log.unseen:,} new"]
            if log.cursor is not None:
                where.insert(0, f"line {log.cursor + 1:,} of {len(log.entries):,}")
            title += f" - {', '.join(where)} (End follows)"
        else:
            title += " - following"
        if title != self.event_log.border_title:
            self.event_log.border_title = title

    def action_search(self) -> None:
        self.push_screen(SearchScreen(self._search_text), self._search)

    def _search(self, text: str | None) -> None:
        if text is None:
            return
        self._search_text = text
        self._found = search_pattern(text)
        self.event_log.mark(self._found)
        self._match = None
        self.action_next_match(-1)  # the newest match

    def action_next_match(self, step: int) -> None:
        """Jump to the match before (``step`` -1: older) or after (+1) the last one shown."""
        if self._found is None:
            return
        lines = self.event_log.matches(self._found)
        if not lines:
            self._match_text = f"'{sanitize(self._search_text)}': no match"
            self._update_log_title()
            return
        # The match shown carries the cursor, which stays on its line as old lines drop off.
        current = self.event_log.cursor if self._match is not None else None
        if current is None:
            index = len(lines) - 1
        else:
            before = [n for n, line in enumerate(lines) if line < current]
            after = [n for n, line in enumerate(lines) if line > current]
            if step < 0:
                index = before[-1] if before else 0
            else:
                index = after[0] if after else len(lines) - 1
        self._match = lines[index]
        self.event_log.show_line(self._match)
        self._match_text = f"'{sanitize(self._search_text)}': {index + 1} of {len(lines)}"
        self._update_log_title()

    def action_clear_search(self) -> None:
        if self._found is None:
            return
        self._found = self._match = None
        self._match_text = ""
        self.event_log.mark(None)
        self._update_log_title()

    def action_copy_or_quit(self) -> None:
        """Ctrl+C: as in a terminal, copy what the mouse selected (on the screen, so
        already sanitized); with nothing selected, quit."""
        selected = self.screen.get_selected_text()
        if not selected:
            self.exit()
            return
        self.copy_to_clipboard(selected)
        self.screen.clear_selection()
        self.notify(f"copied {len(selected):,} characters", timeout=2)

    def on_event_log_opened(self, message: EventLog.Opened) -> None:
        self.push_screen(DetailsScreen(message.entry, self.copy_entry))

    def on_query_table_opened(self, message: QueryTable.Opened) -> None:
        query = self.cache.queries.get(message.key)
        if query is None:
            return  # evicted between the key press and now

        def when(t: float) -> str:
            return clock_time(self._wallclock() - (self._clock() - t))

        self.push_screen(HistoryScreen(query, when))

    def action_copy_event(self) -> None:
        """y: the selected line's frame."""
        self.copy_entry(self.event_log.selected)

    def copy_entry(self, entry: Entry | None) -> None:
        """Put ``entry``'s frame on the clipboard (ASCII JSON, or a malformed frame with its
        controls made visible: nothing in it acts on a terminal), or say why not."""
        if entry is None:
            self.notify("The log is empty: nothing to copy.", timeout=3)
            return
        frame = copied_text(entry[2])
        if frame is None:
            why = {
                type(None): "is the monitor's own (no frame)",
                NotKept: "came in a frame too big to keep",
            }.get(type(entry[2]), "holds data nested too deep to encode again")
            self.notify(f"Nothing to copy: this line {why}.", timeout=3)
            return
        self.copy_to_clipboard(frame)
        self.notify(f"copied the {entry[0]} frame ({len(frame):,} characters)", timeout=2)

    def action_save(self) -> None:
        """s: the events the log keeps, as filtered, to a recording in --save-dir. Encoded
        and written in a thread: a big log takes seconds, and the events keep coming."""
        entries = list(self.event_log.entries)  # a snapshot: the entries never change
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._wallclock()))
        folder = Path(self.settings.save_dir or ".").absolute()
        self.run_worker(
            partial(self._save, entries, folder / f"bbb-events-{stamp}"),
            thread=True,
            group="save",
            exit_on_error=False,
        )

    def _save(self, entries: list[Entry], stem: Path) -> None:
        """(In a thread.) Write ``entries`` as a recording at ``stem`` (.jsonl), and say so."""
        lines = saved_lines(entries)
        left_out = sum(entry[2] is not None for entry in entries) - len(lines)
        try:
            path, file = new_file(stem.parent, stem.name, ".jsonl")
            with file:
                file.writelines(lines)
        except OSError as exc:
            self.call_from_thread(
                self.notify,
                f"Cannot save to {stem.parent}: {exc.strerror or exc}",
                severity="error",
            )
            return
        said = f"saved {len(lines):,} events to {path}"
        if left_out:
            said += f" ({left_out:,} too big to keep or too deeply nested, left out)"
        self.call_from_thread(self.monitor.note, said)
        self.call_from_thread(self.notify, f"{said} (bbb-tui --replay reads it)")

    def action_follow(self) -> None:
        self.event_log.follow()
        self._update_log_title()

    # -- actions -----------------------------------------------------------------

    def action_fire(self, index: int) -> None:
        self._fire([SEED_EVENTS[index]])

    def action_fire_all(self) -> None:
        self._fire(list(SEED_EVENTS))

    def _fire(self, events: list[tuple[EventType, str]]) -> None:
        if self.settings.read_only:  # the bindings are off too; this is the last word
            return
        self.run_worker(self._publish(events), group="publish", exit_on_error=False)

    async def _publish(self, events: list[tuple[EventType, str]]) -> None:
        try:
            receivers = await self.publisher.publish(events)
        except ResponseError as exc:  # Redis answered, with an error
            self.notify(
                f"Redis at {redact(self.publisher.url)} refused it: {exc}",
                title="Cannot publish test event",
                severity="error",
            )
            return
        except Exception as exc:  # any other Redis or network failure: say so, break nothing
            self.notify(
                f"Redis at {redact(self.publisher.url)} is not reachable: {exc}",
                title="Cannot publish test event",
                severity="error",
            )
            return
        sent = ", ".join(f"{t.value} {p}" for t, p in events)
        self.monitor.note(f"published {sent} ({min(receivers)} subscriber(s))")
        if min(receivers) == 0:
            self.notify("No bridge is subscribed to this Redis and prefix.", severity="warning")

    def action_reconnect(self) -> None:
        if self.client.stopped:  # refused for good: a new attempt, from scratch
            self.monitor.note("trying again (r)")
            self._start_client()
        else:
            self.monitor.note("reconnecting now (r)")
            self.client.reconnect_now()

    def _start_client(self) -> None:
        if self.settings.replay is not None:
            self.run_worker(self._replay(self.settings.replay), name="replay", exclusive=True)
        elif self._connect:
            self.run_worker(self.client.run(), name="websocket", exclusive=True)

    def _on_frames(self, frames: list[str | bytes]) -> None:
        """A read from the bridge, recorded (--record) before it is shown."""
        assert self.recorder is not None
        self.recorder.write(frames)
        self.monitor.feed_many(frames)

    def _replay_time(self) -> float:
        """The time a replayed log line shows: when its frame arrived, not now."""
        return self._wallclock() if self._replayed_at is None else self._replayed_at

    def _feed_replayed(self, frames: list[str | bytes], when: float) -> None:
        self._replayed_at = when
        self.monitor.feed_many(frames)

    async def _replay(self, path: str) -> None:
        """Play a recording through the monitor, as if a bridge sent it now."""
        speed = self.settings.replay_speed
        pace = f"x{speed:g}" if speed else "as fast as possible"
        self.on_status(ConnStatus(ConnState.CONNECTED, f"replay of {path} ({pace})",
                                  connected_at=self._clock(), connections=1))  # fmt: skip
        try:
            count = await replay(path, self._feed_replayed, speed=speed)
        except (OSError, BadRecording) as exc:
            self._replayed_at = None  # what is said from now on, is said now
            self.monitor.note(f"replay stopped: {exc}")
            return
        self._replayed_at = None
        self.monitor.note(f"replay finished: {count:,} frames of {path}")

    def action_token(self) -> None:
        self.push_screen(TokenScreen(), self._use_token)

    def _use_token(self, token: str | None) -> None:
        if token is None:
            return
        self.client.token = token
        self.client.token_file = None  # what was typed wins over the file
        self.monitor.note("reconnecting with the new token (t)")
        if self.client.stopped:
            self._start_client()
        else:
            self.client.reconnect_now()
        self.flush(force=True)

    def action_toggle_pause(self) -> None:
        self.monitor.set_paused(not self.monitor.paused)
        if not self.monitor.paused and self._refilter_on_resume:
            self._refilter_on_resume = False
            self.event_log.replace(self.monitor.visible_entries())  # the filter changed meanwhile
        self._update_log_title()
        self.flush(force=True)  # on resume, the held lines appear now, not on the next tick

    def action_clear(self) -> None:
        self.monitor.clear()
        self.event_log.clear()
        self._update_log_title()

    def action_filter(self) -> None:
        self.push_screen(FilterScreen(self.monitor.shown, self.set_filter))

    def set_filter(self, shown: frozenset[str]) -> None:
        """Show only these kinds of line; the kept lines are redrawn at once."""
        self.monitor.shown = shown
        if self.monitor.paused:
            self._refilter_on_resume = True  # a paused log does not change until resumed
        else:
            self.event_log.replace(self.monitor.visible_entries())
        self._update_log_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """+ and - exist only in the demo; the publishing keys not at all with --read-only."""
        if action == "rate":
            return self.workload is not None
        if action == "view":
            return self.real
        if action in PUBLISHING_ACTIONS:
            return not (self.settings.read_only or self.settings.replay)
        if action in ("reconnect", "token") and self.settings.replay:
            return False  # a replay has no bridge
        if action == "token":  # offered after a refusal, or when a token is in use
            return self.client.stopped or bool(self.client.token or self.client.token_file)
        return True

    def action_rate(self, factor: float) -> None:
        if self.workload is None:
            return
        self.workload.rate = min(max(self.workload.rate * factor, MIN_RATE), MAX_RATE)
        per = "jobs" if self.real else "job changes"
        self.monitor.note(f"demo: {self.workload.rate:.3g} {per}/s")
        self.notify(f"demo: {self.workload.rate:.3g} {per}/s", timeout=2)
        self.flush(force=True)

    def action_help(self) -> None:
        self.push_screen(HelpScreen([(keys, what) for keys, what, _ in self.key_table()]))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Ctrl+P: every key's action by name (those offered now), then Textual's own."""
        for keys, description, action in self.key_table():
            yield SystemCommand(
                description[:1].upper() + description[1:],
                f"key: {keys}",
                partial(self.run_action, action),
            )
        panes = {EventLog: self.event_log, QueryTable: self.table}
        for where, pane in PANES:
            for keys, what, action in binding_rows(pane.BINDINGS, self.key_display):
                yield SystemCommand(
                    f"{where[:1].upper()}{where[1:]}: {what}",
                    f"key: {keys}",
                    partial(self.run_action, action, panes[pane]),
                )
        yield from super().get_system_commands(screen)

    def key_table(self) -> list[tuple[str, str, str]]:
        """(keys, what they do, action) of each app key offered now (as the footer does)."""
        return [  # less what check_action hides, as the footer does (+ and -, publishing)
            (keys, what, action)
            for keys, what, action in binding_rows(self.BINDINGS, self.key_display)
            if self.check_action(*parse(action)[1:]) is not False
        ]

    def key_display(self, key: str) -> str:
        """One key as the footer shows it: ``?``, ``^c``, ``end``."""
        return self.get_key_display(Binding(key, ""))
