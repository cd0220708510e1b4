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
from textual.widgets import Log

from bbb_tui.monitor import INFO, MALFORMED, UNKNOWN
from bbb_tui.widgets.safe import dim_escapes
from bridge.core.sanitize import sanitize

KIND_COLOURS: dict[str, str] = {
    "job-refresh": "#61afef",
    "single-job-refresh": "#56b6c2",
    "log-refresh": "#c678dd",
    "job-log-refresh": "#d7a8ef",
    "queue-refresh": "#98c379",
    "single-queue-refresh": "#b8e08a",
    "job-scheduler-refresh": "#e5c07b",
    "single-job-scheduler-refresh": "#f0d58c",
    UNKNOWN: "#d7875f",
    MALFORMED: "bold #e06c75",
    INFO: "italic #8a919c",
}


class KindHighlighter(Highlighter):
    """Colour the kind column, dim the timestamp and the visible escapes of each log line."""

    _line = re.compile(r"^(\S+)  (\S+)")
    _styles = {kind: Style.parse(colour) for kind, colour in KIND_COLOURS.items()}
    _stamp = Style(dim=True)

    def highlight(self, text: Text) -> None:
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
    """A ``Log`` with coloured kinds; written in batches by the app's flush."""

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=True, id=id)
        self.highlighter = KindHighlighter()

    def append(self, lines: list[str]) -> None:
        """Write a batch and redraw (a full ``Log`` with max_lines does not redraw by itself).

        Follows the end while the view is at the end. (Log's own auto-scroll decides
        before its size is updated, so it stops following the first time the log
        outgrows the screen.)
        """
        if lines:
            following = self.scroll_offset.y >= self.max_scroll_y
            self.write_lines([sanitize(line) for line in lines], scroll_end=False)
            self.refresh()
            if following:
                self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """Replace Log's thread worker, which measures every new line off the event loop.

        That worker cost a thread per batch, and when the app quit while one was
        pending it failed with NoActiveAppError, turning a clean quit under load into
        a crash. This log never scrolls sideways (overflow-x: hidden), so the width of
        the longest line is not needed: nothing to measure.
        """

    def replace(self, lines: list[str]) -> None:
        self.clear()
        self.append(lines)
