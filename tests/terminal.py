"""A program in a real pseudo-terminal, watched by a VT emulator that answers like xterm.

pyte keeps the screen; on top of it, this answers the queries a terminal answers *as
typed input* (DA1, DA2, window size, cursor position, status), as xterm does, and
records every query, title change (OSC 0/1/2), clipboard write (OSC 52) and device
control string (DCS, APC, PM, SOS: where a terminal stops showing output) the program
sent. (pyte's own title is not used: it reads Textual's OSC 22 as a title.)

A program that lets outside text reach the terminal raw is caught twice: its query is
counted, and its answer arrives as keystrokes.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Sequence

import pyte

from tests.helpers import ROOT, wait_for

CSI = r"(?:\x1b\[|\x9b)"  # 7-bit or C1 (xterm obeys U+009B as CSI in UTF-8 mode)
OSC = r"(?:\x1b\]|\x9d)"
ST = r"(?:\x07|\x1b\\|\x9c)"

#: What xterm answers, per query (the reply is written to the program's input).
QUERIES: dict[str, re.Pattern[str]] = {
    "DA1": re.compile(CSI + r"0?c"),
    "DA2": re.compile(CSI + r">0?c"),
    "window size": re.compile(CSI + r"18t"),
    "cursor position": re.compile(CSI + r"6n"),
    "status": re.compile(CSI + r"5n"),
}
OSC_SEQUENCE = re.compile(OSC + r"(\d*);([^\x07\x1b\x9c]*)" + ST)
STRING_CONTROL = re.compile(r"\x1b[P_^X]|[\x90\x98\x9e\x9f]")
LOOKBACK = 64  # characters kept between scans, so a query split across reads is found


class Terminal:
    """``argv`` under a pseudo-terminal of ``columns`` x ``rows``; :meth:`close` kills it."""

    def __init__(self, argv: Sequence[str], *, columns: int = 120, rows: int = 40) -> None:
        self.argv = list(argv)
        self.columns, self.rows = columns, rows
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""  # decoded output not yet scanned (plus a lookback)
        self.left_alternate_screen = False  # the program restored the screen it found
        self.mouse_off = False  # ...or turned mouse reporting off
        self.queries: list[str] = []  # names of the queries the program sent
        self.titles: list[str] = []  # OSC 0, 1, 2
        self.clipboard_writes: list[str] = []  # OSC 52
        self.string_controls: list[str] = []  # DCS, APC, PM, SOS
        self.output_bytes = 0
        self._master = -1
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.columns, 0, 0))
        environ = {**os.environ, **(env or {}), "TERM": "xterm-256color"}
        for name in ("COLUMNS", "LINES", "TEXTUAL", "NO_COLOR"):
            environ.pop(name, None)
        self.process = subprocess.Popen(
            self.argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_controlling_terminal,
            env=environ,
            cwd=ROOT,
        )
        os.close(slave)
        self._master = master
        asyncio.get_running_loop().add_reader(master, self._readable)
        return self

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # the program exited: EIO on Linux
            asyncio.get_running_loop().remove_reader(self._master)
            return
        self.output_bytes += len(data)
        text = self._decoder.decode(data)
        self._stream.feed(text)
        self._scan(text)

    def _scan(self, text: str) -> None:
        """Find the queries in the new output and answer them as xterm would."""
        window = self._text + text
        start = len(self._text)  # only matches that end in the new text are new
        for name, pattern in QUERIES.items():
            for match in pattern.finditer(window):
                if match.end() > start:
                    self.queries.append(name)
                    self.type(self._answer(name))
        for match in OSC_SEQUENCE.finditer(window):
            if match.end() > start:
                code, value = match.groups()
                if code in ("0", "1", "2"):
                    self.titles.append(value)
                elif code == "52":
                    self.clipboard_writes.append(value)
        recent = window[max(start - 8, 0) :]
        self.left_alternate_screen |= "\x1b[?1049l" in recent
        self.mouse_off |= "\x1b[?1000l" in recent
        for match in STRING_CONTROL.finditer(window):
            if match.end() > start:
                self.string_controls.append(match.group())
        self._text = window[-LOOKBACK:]

    def _answer(self, query: str) -> str:
        cursor = self.screen.cursor
        return {
            "DA1": "\x1b[?1;2c",
            "DA2": "\x1b[>0;276;0c",
            "window size": f"\x1b[8;{self.rows};{self.columns}t",
            "cursor position": f"\x1b[{cursor.y + 1};{cursor.x + 1}R",
            "status": "\x1b[0n",
        }[query]

    def type(self, keys: str) -> None:
        """Send ``keys`` as if typed."""
        os.write(self._master, keys.encode())

    @property
    def lines(self) -> list[str]:
        return list(self.screen.display)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_text(self, needle: str, timeout: float = 15.0) -> None:
        await wait_for(
            lambda: needle in self.text, timeout, what=f"{needle!r} on screen:\n{self.text}"
        )

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        await wait_for(predicate, timeout, what=f"{what}; the screen:\n{self.text}")

    def misaligned_rows(self) -> list[str]:
        """Rows inside a box whose right border is not in the last column: a row too wide."""
        problems = []
        inside = False
        for y in range(self.rows):
            row = self.screen.buffer[y]
            first, last = row[0].data, row[self.columns - 1].data
            if first == "\N{BOX DRAWINGS LIGHT ARC DOWN AND RIGHT}":
                inside = True
                continue
            if first == "\N{BOX DRAWINGS LIGHT ARC UP AND RIGHT}":
                inside = False
                continue
            if inside and (first != "\N{BOX DRAWINGS LIGHT VERTICAL}" or last != first):
                problems.append(f"row {y}: {self.lines[y]!r}")
        return problems

    def stop_reading(self) -> None:
        """The terminal stops taking output (frozen, or going away): writes to it block."""
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)

    def hang_up(self) -> None:
        """The terminal goes away (its window closed): the kernel sends the program SIGHUP,
        and its reads and writes fail."""
        self.stop_reading()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    async def close(self) -> int | None:
        """Kill the program if it still runs (clean-up; safe to call twice)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.to_thread(self.process.wait, 10)
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1
        return None if self.process is None else self.process.returncode


def _controlling_terminal() -> None:  # in the child, after setsid()
    """Make the pseudo-terminal the program's own, as a terminal emulator does: closing it
    then sends SIGHUP, as closing a window would."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def bbb_tui(*args: str) -> list[str]:
    """The argv of ``bbb-tui *args`` run from this checkout."""
    return [sys.executable, "-m", "bbb_tui", *args]
