"""Modal screens: the key help, the log filter, the token prompt and the log search."""

from __future__ import annotations

import re
from collections.abc import Callable

from rich.text import Text
from textual.actions import parse
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, SelectionList, Static

from bbb_tui.monitor import KINDS
from bbb_tui.widgets.eventlog import kind_style

ABOUT = (
    "bbb-tui shows what Better Bull Board's web client does with each message from the bridge: "
    "the event log, and the React Query cache each message invalidates and refetches: "
    "simulated, or with BullMQ data real queues and jobs (v: queues, jobs, cache; Enter on a "
    "job opens it, r reads it again, escape closes it). Test events (1-4, a) are published on "
    "the Redis channels and come back through a bridge that reads them (--source pubsub or both)."
)


class HelpScreen(ModalScreen[None]):
    """Every key binding the app offers now (its BINDINGS, less what ``check_action`` hides)."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        rows = []
        for binding in self.app.BINDINGS:
            assert isinstance(binding, Binding)
            _, action, parameters = parse(binding.action)
            if self.app.check_action(action, parameters) is False:
                continue  # hidden here as in the footer (the demo's keys, publishing keys)
            keys = ", ".join(
                self.app.get_key_display(Binding(k, "")) for k in binding.key.split(",")
            )
            rows.append((keys, binding.tooltip or binding.description))
        width = max(len(keys) for keys, _ in rows)
        keys_text = Text()
        for keys, description in rows:
            keys_text.append(f"{keys:>{width}}  ", style="bold #61afef")
            keys_text.append(f"{description}\n")
        keys_text.append(f"{'PgUp, PgDn':>{width}}  ", style="bold #61afef")
        keys_text.append("scroll the log or a table (or the mouse wheel); Up, Down move in a table")
        with VerticalScroll(id="help-box"):  # scrolls when the terminal is too small for it
            yield Static(Text(ABOUT, style="dim"), id="help-about")
            yield Static(keys_text, id="help-keys")
            yield Static(Text("escape or ? closes; PgUp, PgDn scroll this", style="dim italic"))


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
