"""The live event log: a bounded ``Log`` whose lines are coloured by message kind.

Its lines are sanitized where they are made (:mod:`bbb_tui.monitor`) and again here,
before ``Log`` sees them: ``Log`` itself replaces only some C0 controls, and splits
lines on U+0085, U+2028 and U+2029, which would let a job id forge a line of its own.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Self

from rich.highlighter import Highlighter
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Log

from bbb_tui.monitor import INFO, MALFORMED, UNKNOWN, Entry
from bbb_tui.widgets.safe import dim_escapes
from bbb_tui.widgets.themed import cursor_style, themed
from bridge.core.sanitize import sanitize

#: Each kind's colour, as a theme variable (with a style), so every theme reads well.
KIND_COLOURS: dict[str, str] = {
    "job-refresh": "bold $text-primary",
    "single-job-refresh": "$text-primary",
    "log-refresh": "bold $text-secondary",
    "job-log-refresh": "$text-secondary",
    "queue-refresh": "bold $text-success",
    "single-queue-refresh": "$text-success",
    "job-scheduler-refresh": "bold $text-accent",
    "single-job-scheduler-refresh": "$text-accent",
    UNKNOWN: "bold $text-warning",
    MALFORMED: "bold $text-error",
    INFO: "italic dim",
}


def kind_style(kind: str, variables: Mapping[str, str]) -> Style:
    """The Rich style of ``kind`` in a theme (its CSS variables)."""
    return themed(KIND_COLOURS.get(kind, ""), variables)


class KindHighlighter(Highlighter):
    """Colour the kind column, dim the timestamp and the visible escapes of each log line."""

    _line = re.compile(r"^(\S+)  (\S+)")
    _stamp = Style(dim=True)
    _found = Style(reverse=True, bold=True)

    def __init__(self) -> None:
        self.search: re.Pattern[str] | None = None  # what a search marks, in every line
        self._styles: dict[str, Style] = {}  # by kind, from the theme (see EventLog)

    def use_theme(self, variables: Mapping[str, str]) -> None:
        self._styles = {kind: kind_style(kind, variables) for kind in KIND_COLOURS}

    def highlight(self, text: Text) -> None:
        if self.search is not None:
            for found in self.search.finditer(text.plain):
                if found.end() > found.start():
                    text.stylize(self._found, *found.span())
        match = self._line.match(text.plain)
        if match is None:
            return
        text.stylize(self._stamp, *match.span(1))
        style = self._styles.get(match.group(2))
        if style is not None:
            text.stylize(style, *match.span(2))
            if match.group(2) in (MALFORMED, INFO):
                text.stylize(style, match.end(2))
        dim_escapes(text)


class EventLog(Log):
    """A ``Log`` with coloured kinds; written in batches by the app's flush.

    It follows the newest line (as ``stern`` and k9s's log view do) until you scroll up:
    then it stays where you are and counts what arrived (:attr:`unseen`); scrolling back
    to the end, or :meth:`follow` (End, G), follows again. A resize keeps it following.

    Up/Down (k/j) or a click put a cursor on a line; Enter (or a double click) opens it
    (:class:`Opened`), and the app reads :attr:`entries` for what it was.
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "up", show=False,
                tooltip="select the line above (at first: the bottom line shown)"),
        Binding("down,j", "cursor(1)", "down", show=False,
                tooltip="select the line below (past the newest: follow again)"),
        Binding("enter", "open", "details", show=False,
                tooltip="open the selected line: its frame, seq, arrival, the keys it invalidated"),
        Binding("home,g", "scroll_home", "top", show=False, tooltip="the oldest line"),
    ]  # fmt: skip

    class Opened(Message):
        """Enter on a line: the app shows its details."""

        def __init__(self, entry: Entry) -> None:
            super().__init__()
            self.entry = entry

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=False, id=id)
        self.highlighter = KindHighlighter()
        self.following = True
        self.unseen = 0  # lines written while not following
        #: What each line shows, line for line (Log keeps only the text).
        self.entries: deque[Entry] = deque(maxlen=max_lines)
        self.cursor: int | None = None  # the line Enter opens (None: following, no cursor)
        self._cursor_style = Style(reverse=True)

    def append(self, entries: list[Entry]) -> None:
        """Write a batch and redraw (a full ``Log`` with max_lines does not redraw by itself),
        at the end while following. (Log's own auto-scroll decides before its size is
        updated, so it stopped following the first time the log outgrew the screen.)
        Looking back, the lines stay where they are on the screen as old ones drop off."""
        if not entries:
            return
        assert self.max_lines is not None
        dropped = max(len(self.entries) + len(entries) - self.max_lines, 0)
        self.entries.extend(entries)
        self.write_lines([sanitize(entry[1]) for entry in entries], scroll_end=False)
        self.refresh()
        if self.following:
            self._to_end()
            return
        self.unseen += len(entries)
        if dropped:
            if self.cursor is not None:  # on its line still; gone if its line dropped off
                self.cursor = None if self.cursor < dropped else self.cursor - dropped
            self.scroll_to(y=max(self.scroll_offset.y - dropped, 0), animate=False, immediate=True)

    @property
    def selected(self) -> Entry | None:
        """The entry under the cursor; the newest one when there is no cursor."""
        if not self.entries:
            return None
        return self.entries[-1 if self.cursor is None else self.cursor]

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._retheme)

    def _retheme(self) -> None:
        assert isinstance(self.highlighter, KindHighlighter)
        variables = self.app.get_css_variables()
        self.highlighter.use_theme(variables)
        self._cursor_style = cursor_style(variables, no_color=self.app.no_color)
        self._render_line_cache.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.cursor is not None and self.cursor == self.scroll_offset.y + y:
            strip = Strip(Segment.apply_style(list(strip), post_style=self._cursor_style))
        return strip

    def action_cursor(self, step: int) -> None:
        """Move the cursor a line (the first Up puts it on the bottom line shown)."""
        count = len(self.entries)
        if not count:
            return
        if self.cursor is None:
            if step > 0:
                return  # following already: nothing below
            bottom = min(self.scroll_offset.y + self.scrollable_content_region.height, count)
            self._set_cursor(max(bottom - 1, 0))  # (a log with no height has a line too)
        elif step > 0 and self.cursor >= count - 1:
            self.follow()  # past the newest line: following again
        else:
            self._set_cursor(min(max(self.cursor + step, 0), count - 1))

    def _set_cursor(self, line: int) -> None:
        self.cursor = line
        self._look_back()
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        if line < top:
            self.scroll_to(y=line, animate=False, immediate=True)
        elif line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False, immediate=True)
        self.refresh()

    def action_open(self) -> None:
        if (entry := self.selected) is not None:
            self.post_message(self.Opened(entry))

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on a line; a double click opens it."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = self.scroll_offset.y + offset.y
        if line < len(self.entries):
            self._set_cursor(line)
            if event.chain == 2:
                self.action_open()

    def follow(self) -> None:
        """Follow the newest line again (End, G); the cursor goes."""
        self.following, self.unseen, self.cursor = True, 0, None
        self._to_end()
        self.refresh()

    def _to_end(self) -> None:
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def _look_back(self) -> None:
        self.following = False

    def _maybe_follow(self) -> None:
        """Scrolled down to the very end, with no cursor: following again."""
        if not self.following and self.cursor is None and self.scroll_offset.y >= self.max_scroll_y:
            self.follow()

    def action_scroll_up(self) -> None:
        self._look_back()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._look_back()
        if self.cursor is not None:
            self.cursor = max(self.cursor - self.scrollable_content_region.height, 0)
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._look_back()
        if self.cursor is not None:
            self.cursor = 0
        super().action_scroll_home()

    def action_scroll_down(self) -> None:
        super().action_scroll_down()
        self.call_after_refresh(self._maybe_follow)

    def action_page_down(self) -> None:
        if self.cursor is not None:
            page = self.scrollable_content_region.height
            self.cursor = min(self.cursor + page, max(len(self.entries) - 1, 0))
        super().action_page_down()
        self.call_after_refresh(self._maybe_follow)

    def action_scroll_end(self) -> None:
        self.follow()

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._look_back()
        super()._on_mouse_scroll_up(event)

    def _on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        super()._on_mouse_scroll_down(event)
        self.call_after_refresh(self._maybe_follow)

    def on_resize(self, event: events.Resize) -> None:
        if self.following:  # a new size moves the end: still there
            self._to_end()

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """Replace Log's thread worker, which measures every new line off the event loop.

        That worker cost a thread per batch, and when the app quit while one was
        pending it failed with NoActiveAppError, turning a clean quit under load into
        a crash. This log never scrolls sideways (overflow-x: hidden), so the width of
        the longest line is not needed: nothing to measure.
        """

    def mark(self, search: re.Pattern[str] | None) -> None:
        """Mark what ``search`` matches in every line (None: nothing)."""
        assert isinstance(self.highlighter, KindHighlighter)
        self.highlighter.search = search
        self._render_line_cache.clear()
        self.refresh()

    def matches(self, search: re.Pattern[str]) -> list[int]:
        """The lines ``search`` matches, by index, oldest first."""
        return [n for n, line in enumerate(self.lines) if search.search(line)]

    def show_line(self, index: int) -> None:
        """Put the cursor on line ``index``, in the middle of the log (and stop following)."""
        self._look_back()
        self.cursor = index
        self.scroll_to(y=max(index - self.size.height // 2, 0), animate=False, immediate=True)
        self.refresh()

    def clear(self) -> Self:
        self.entries.clear()
        self.cursor = None
        self.unseen = 0
        return super().clear()

    def replace(self, entries: list[Entry]) -> None:
        self.clear()
        self.append(entries)
