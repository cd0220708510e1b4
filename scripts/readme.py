"""Write the README's options tables from the option tables themselves (``make readme``).

Each table sits between ``<!-- options: NAME -->`` and ``<!-- /options -->``; running this
rewrites what is between them. ``--check`` only says whether the README is up to date
(the test suite does the same, so the README cannot drift from the flags).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bbb_tui.cli import OPTIONS as TUI_OPTIONS
from bridge.cli import COMMANDS
from bridge.options import Option, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
TABLES: dict[str, tuple[Option, ...]] = {
    "bbb-bridge serve": COMMANDS["serve"].options,
    "bbb-bridge tail": COMMANDS["tail"].options,
    "bbb-tui": TUI_OPTIONS,
}
_BLOCK = re.compile(r"(<!-- options: (?P<name>[^>]+?) -->\n).*?(<!-- /options -->)", re.DOTALL)


def render(text: str) -> str:
    """``text`` with every options block rewritten from its table."""

    def table(match: re.Match[str]) -> str:
        rows = markdown_table(TABLES[match.group("name")])
        return match.group(1) + "\n".join(rows) + "\n" + match.group(3)

    return _BLOCK.sub(table, text)


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
            print("README.md options tables are stale: run 'make readme'", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
