"""Write the README's options and keys tables from the code itself (``make readme``).

Each options table sits between ``<!-- options: NAME -->`` and ``<!-- /options -->``, the
TUI's keys between ``<!-- keys: bbb-tui -->`` and ``<!-- /keys -->`` (from its bindings
and the panes' keys, as its help screen shows them); running this rewrites what is
between them. ``--check`` only says whether the README is up to date
(the test suite does the same, so the README cannot drift from the flags).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from textual.actions import parse
from textual.binding import Binding

from bbb_tui.app import BbbApp
from bbb_tui.cli import OPTIONS as TUI_OPTIONS
from bbb_tui.screens import pane_keys
from bridge.cli import COMMANDS
from bridge.options import Option, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
TABLES: dict[str, tuple[Option, ...]] = {
    "bbb-bridge serve": COMMANDS["serve"].options,
    "bbb-bridge tail": COMMANDS["tail"].options,
    "bbb-tui": TUI_OPTIONS,
}
_BLOCK = re.compile(r"(<!-- options: (?P<name>[^>]+?) -->\n).*?(<!-- /options -->)", re.DOTALL)
_KEYS = re.compile(r"(<!-- keys: bbb-tui -->\n).*?(<!-- /keys -->)", re.DOTALL)
#: When a key is offered (the help screen shows only the keys offered now).
KEY_NOTES = {
    "fire": "not with `--read-only` or `--replay`: ",
    "fire_all": "not with `--read-only` or `--replay`: ",
    "token": "after a refusal, or with a token in use: ",
}
_KEY_NAMES = {
    "question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "escape": "Esc",
    "end": "End", "enter": "Enter", "ctrl+c": "Ctrl+C", "up": "Up", "down": "Down",
    "home": "Home", "pageup": "PgUp", "pagedown": "PgDn",
}  # fmt: skip


def keys_table() -> list[str]:
    """The TUI's keys as Markdown rows: the app's bindings, then the panes' keys."""
    rows = ["| key | action |", "|---|---|"]
    for binding in BbbApp.BINDINGS:
        assert isinstance(binding, Binding)
        keys = " ".join(f"`{_KEY_NAMES.get(k, k)}`" for k in binding.key.split(","))
        note = KEY_NOTES.get(parse(binding.action)[1], "")
        rows.append(f"| {keys} | {note}{binding.tooltip or binding.description} |")
    for keys, what in pane_keys(lambda key: _KEY_NAMES.get(key, key)):
        shown = " ".join(f"`{k.strip()}`" for k in keys.split(","))
        rows.append(f"| {shown} | {what} |")
    return rows


def render(text: str) -> str:
    """``text`` with every options block rewritten from its table."""

    def table(match: re.Match[str]) -> str:
        rows = markdown_table(TABLES[match.group("name")])
        return match.group(1) + "\n".join(rows) + "\n" + match.group(3)

    text = _BLOCK.sub(table, text)
    return _KEYS.sub(lambda m: m.group(1) + "\n".join(keys_table()) + "\n" + m.group(2), text)


def blocks(text: str) -> list[str]:
    return [match.group("name") for match in _BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md options or keys tables are stale: run 'make readme'", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
