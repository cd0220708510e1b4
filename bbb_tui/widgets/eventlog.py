"""The live event log: a bounded ``Log`` whose lines are coloured by message kind.

Its lines are sanitized where they are made (:mod:`bbb_tui.monitor`) and again here,
before ``Log`` sees them: ``Log`` itself replaces only some C0 controls, and splits
lines on U+0085, U+2028 and U+2029, which would let a job id forge a line of its own.
"""

from __future__ import annotations

import re

from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual import events
from textual.widgets import Log

from bbb_tui.monitor import INFO, MALFORMED, UNKNOWN
from bbb_tui.widgets.safe import dim_escapes
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


def kind_style(kind: str, variables: dict[str, str]) -> Style:
    """The Rich style of ``kind`` in a theme (its CSS variables)."""
    words = KIND_COLOURS.get(kind, "").split()
    colours = [variables.get(w[1:], "") if w.startswith("$") else w for w in words]
    try:
        return Style.parse(" ".join(c for c in colours if c))
    except Exception:  # a theme whose colour Rich cannot read: plain, still readable
        return Style()


class KindHighlighter(Highlighter):
    """Colour the kind column, dim the timestamp and the visible escapes of each log line."""

    _line = re.compile(r"^(\S+)  (\S+)")
    _stamp = Style(dim=True)
    _found = Style(reverse=True, bold=True)

    def __init__(self) -> None:
        self.search: re.Pattern[str] | None = None  # what a search marks, in every line
        self._styles: dict[str, Style] = {}  # by kind, from the theme (see EventLog)

    def use_theme(self, variables: dict[str, str]) -> None:
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
    """

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=False, id=id)
        self.highlighter = KindHighlighter()
        self.following = True
        self.unseen = 0  # lines written while not following

    def append(self, lines: list[str]) -> None:
        """Write a batch and redraw (a full ``Log`` with max_lines does not redraw by itself),
        at the end while following. (Log's own auto-scroll decides before its size is
        updated, so it stopped following the first time the log outgrew the screen.)"""
        if lines:
            self.write_lines([sanitize(line) for line in lines], scroll_end=False)
            self.refresh()
            if self.following:
                self._to_end()
            else:
                self.unseen += len(lines)

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._retheme)

    def _retheme(self) -> None:
        assert isinstance(self.highlighter, KindHighlighter)
        self.highlighter.use_theme(self.app.get_css_variables())
        self._render_line_cache.clear()
        self.refresh()

    def follow(self) -> None:
        """Follow the newest line again (End, G)."""
        self.following, self.unseen = True, 0
        self._to_end()

    def _to_end(self) -> None:
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def _look_back(self) -> None:
        self.following = False

    def _maybe_follow(self) -> None:
        """Scrolled down to the very end: following again."""
        if not self.following and self.scroll_offset.y >= self.max_scroll_y:
            self.follow()

    def action_scroll_up(self) -> None:
        self._look_back()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._look_back()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._look_back()
        super().action_scroll_home()

    def action_scroll_down(self) -> None:
        super().action_scroll_down()
        self.call_after_refresh(self._maybe_follow)

    def action_page_down(self) -> None:
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
        """Scroll so that line ``index`` is in the middle (and stop following)."""
        self._look_back()
        self.scroll_to(y=max(index - self.size.height // 2, 0), animate=False, immediate=True)

    def replace(self, lines: list[str]) -> None:
        self.clear()
        self.unseen = 0
        self.append(lines)
