"""Modal screens: the key help, the log filter, the token prompt, the log search, and the
details of a log line or a cache key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, SelectionList, Static

from bbb_tui.cache import Query
from bbb_tui.details import describe, pretty_frame
from bbb_tui.monitor import KINDS, Entry
from bbb_tui.widgets.eventlog import EventLog, kind_style
from bbb_tui.widgets.querytable import QueryTable
from bbb_tui.widgets.safe import safe_text
from bbb_tui.widgets.themed import palette_of

ABOUT = (
    "bbb-tui shows what Better Bull Board's web client does with each message from the bridge: "
    "the event log, and the React Query cache each message invalidates and refetches: "
    "simulated, or with BullMQ data real queues and jobs (v: queues, jobs, cache; Enter on a "
    "job opens it, r reads it again, escape closes it). Test events (1-4, a) are published on "
    "the Redis channels and come back through a bridge that reads them (--source pubsub or both)."
)


class HelpScreen(ModalScreen[None]):
    """Every key the app offers now, then what the panes do with keys and the mouse."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys  # (keys, what they do) of the app's keys offered now

    def compose(self) -> ComposeResult:
        keys_table = Table.grid(padding=(0, 2))
        keys_table.add_column(justify="right", style=palette_of(self.app)["key"], no_wrap=True)
        keys_table.add_column()  # wrapped, in its own column
        display = self.app.get_key_display
        for keys, description in self.keys + pane_keys(lambda k: display(Binding(k, ""))):
            keys_table.add_row(keys, description)
        with VerticalScroll(id="help-box"):  # scrolls when the terminal is too small for it
            yield Static(Text(ABOUT, style="dim"), id="help-about")
            yield Static(keys_table, id="help-keys")
            yield Static(Text("escape or ? closes; PgUp, PgDn scroll this", style="dim italic"))


#: What is not a binding of ours: Textual's focus, scrolling and mouse, and the palette.
GENERAL_KEYS = (
    ("tab", "the next pane: the log, the table (the focused one has a bright border)"),
    ("PgUp, PgDn", "scroll a page (or the mouse wheel); scrolling the log up stops following"),
    ("mouse", "click selects a line, double click opens it; drag selects text (ctrl+c copies)"),
    ("ctrl+p", "the command palette: every action by name, and the themes"),
)
#: The panes whose own keys the help, the palette and the README list.
PANES: tuple[tuple[str, type[Widget]], ...] = (("in the log", EventLog), ("in a table", QueryTable))


def binding_rows(
    bindings: Iterable[Binding | tuple[str, ...]], display: Callable[[str], str]
) -> list[tuple[str, str, str]]:
    """(keys as shown, what they do, action) of each binding that says what it does."""
    rows = []
    for binding in bindings:
        if isinstance(binding, Binding) and binding.tooltip:
            keys = ", ".join(display(key) for key in binding.key.split(","))
            rows.append((keys, binding.tooltip, binding.action))
    return rows


def pane_keys(display: Callable[[str], str]) -> list[tuple[str, str]]:
    """(keys, what they do) of the panes' own keys, each said where, then the general ones."""
    rows = [
        (keys, f"{where}: {what}")
        for where, pane in PANES
        for keys, what, _ in binding_rows(pane.BINDINGS, display)
    ]
    return rows + list(GENERAL_KEYS)


class FilterScreen(ModalScreen[None]):
    """Pick the kinds of line the log shows; applied as you toggle."""

    BINDINGS = [Binding("escape,f", "dismiss", "Close")]

    def __init__(self, shown: frozenset[str], on_change: Callable[[frozenset[str]], None]) -> None:
        super().__init__()
        self._shown = shown
        self._on_change = on_change

    def compose(self) -> ComposeResult:
        variables = self.app.get_css_variables()
        options = [
            (Text(kind, style=kind_style(kind, variables)), kind, kind in self._shown)
            for kind in KINDS
        ]
        with Vertical(id="filter-box"):
            yield Static("Show in the log (space toggles, escape closes)", id="filter-title")
            yield SelectionList[str](*options, id="filter-kinds")

    def on_selection_list_selected_changed(
        self, message: SelectionList.SelectedChanged[str]
    ) -> None:
        self._on_change(frozenset(message.selection_list.selected))


class TokenScreen(ModalScreen[str | None]):
    """Paste a new token (after a 401, or to rotate one); dismissed with it, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="token-box"):
            yield Static(
                "A token for this bridge ('bbb-bridge token' prints one). "
                "Enter reconnects with it; escape cancels.",
                id="token-title",
            )
            yield Input(password=True, placeholder="token", id="token-input")

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.dismiss(message.value.strip() or None)


class SearchScreen(ModalScreen[str | None]):
    """Type what to look for in the event log (text or a regular expression); dismissed
    with it, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, last: str = "") -> None:
        super().__init__()
        self._last = last

    def compose(self) -> ComposeResult:
        with Vertical(id="search-box"):
            yield Static(
                "Search the event log: text, or a regular expression (a capital letter makes "
                "it match case). Enter finds the newest match; n older, N newer; escape clears.",
                id="search-title",
            )
            yield Input(
                value=self._last, placeholder="job id, queue, type, anything", id="search-input"
            )

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.dismiss(message.value or None)


def search_pattern(text: str) -> re.Pattern[str]:
    """``text`` as a regular expression, or as plain text when it is not one; case-blind
    unless it holds a capital letter (smart case, as in vim and ripgrep)."""
    flags = 0 if any(c.isupper() for c in text) else re.IGNORECASE
    try:
        return re.compile(text, flags)
    except re.error:
        return re.compile(re.escape(text), flags)


class DetailsScreen(ModalScreen[None]):
    """One log line in full: what it is, when it came, what it invalidated, its frame."""

    BINDINGS = [
        Binding("escape,enter,q", "dismiss", "Close"),
        Binding("y", "copy", "copy JSON"),
    ]

    def __init__(self, entry: Entry, copy: Callable[[Entry], None]) -> None:
        super().__init__()
        self.entry = entry
        self._copy = copy

    def action_copy(self) -> None:
        """y: this line's frame (whatever the log's cursor does meanwhile)."""
        self._copy(self.entry)

    def compose(self) -> ComposeResult:
        facts = describe(self.entry)
        with VerticalScroll(id="details-box"):
            yield Static(facts_text(facts), id="details-facts")
            frame = pretty_frame(self.entry[2])
            if frame is not None:
                yield Static(Text("frame", style="bold"))
                yield Static(shown_lines(frame), id="details-frame")
            yield Static(Text("y copies the frame; escape closes", style="dim italic"))


class HistoryScreen(ModalScreen[None]):
    """One cache key: what it holds now, and its last fetches with what led to each."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, query: Query, when: Callable[[float], str]) -> None:
        super().__init__()
        self.cached = query
        self._when = when  # a time on the cache's clock, as the wall clock said it

    def compose(self) -> ComposeResult:
        query = self.cached
        facts = [
            ("key", json.dumps(list(query.key), ensure_ascii=False)),
            ("status", query.status.value),
            (
                "invalidated",
                f"{query.invalidations:,} times ({query.cancelled:,} restarted a fetch)",
            ),
            ("fetches", f"{query.fetches:,}"),
            ("data", query.data),
        ]
        lines = Text()
        for fetch in reversed(query.history or ()):
            if fetch.invalidated_at is None:
                cause = "initial load"
            else:
                times = "" if fetch.invalidations == 1 else f" ({fetch.invalidations:,} times)"
                cause = f"invalidated {self._when(fetch.invalidated_at)}{times}"
            took = (fetch.finished - fetch.started) * 1000
            lines.append(f"{self._when(fetch.finished)}  ", style="bold")
            lines.append(f"fetched in {took:.0f} ms  ")
            lines.append(f"{cause}\n", style="dim")
            lines.append("    ")
            lines.append_text(safe_text(fetch.data))
            lines.append("\n")
        with VerticalScroll(id="details-box"):
            yield Static(facts_text(facts), id="details-facts")
            count = len(query.history or ())
            title = f"last {count} fetches, newest first" if count else "no fetch completed yet"
            yield Static(Text(title, style="bold"))
            lines.rstrip()
            yield Static(lines, id="history-lines")
            yield Static(Text("escape closes", style="dim italic"))


#: A screen shows this many lines of a frame, each cut at MAX_LINE cells (y copies it whole).
MAX_LINES = 400
MAX_LINE = 2000


def shown_lines(text: str) -> Text:
    """``text`` safe to draw, its first MAX_LINES lines each cut at MAX_LINE cells, and how
    many more there are: a screen of a 16 MiB frame costs what a screen of text does."""
    lines = text.splitlines()
    shown = Text("\n").join(safe_text(line, MAX_LINE, pad=False) for line in lines[:MAX_LINES])
    if len(lines) > MAX_LINES:
        shown.append(f"\n… {len(lines) - MAX_LINES:,} more lines (y copies it whole)", "dim")
    return shown


def facts_text(facts: list[tuple[str, str]]) -> Table:
    """Label: value lines, the labels aligned, long values wrapped in their own column;
    the values (from the wire) made safe."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in facts:
        table.add_row(label, safe_text(value, MAX_LINE, where="middle", pad=False))
    return table
