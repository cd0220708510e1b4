"""Untrusted text made safe to show in a terminal: the one door for text from the wire.

Job ids, queue names, close reasons, HTTP bodies and Redis errors come from whoever can
PUBLISH or answer a socket. Written raw, an ``ESC`` starts a sequence that sets the
terminal's title, writes its clipboard (OSC 52), moves the cursor, leaves the alternate
screen, or asks a question the terminal answers *as typed keys* (``ESC [ c``); a bidi
override reorders what follows; a line separator forges a new line. So every character
that does something other than occupy cells is replaced by a visible escape
(``\\x1b``, ``\\u202e``) before any widget sees it:

- the Unicode categories Cc (C0, DEL, C1), Cf (bidi controls, zero-width characters,
  soft hyphen), Zl and Zp (line and paragraph separators), Cs (lone surrogates: they
  cannot even be encoded for the terminal) and Cn (unassigned: no one knows their
  width);
- variation selectors, which widen or narrow the character before them in some
  terminals and not in others, so a row that measures right here is wrong there.

What remains has a known width per character, so text can be cut and padded by
terminal cells (:func:`fit`), never by code points; escapes are never cut in half.
Pure: no I/O. Rich markup is not interpreted here or by the callers (plain text stays
plain: ``[bold]`` is shown as typed).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from rich.cells import get_character_cell_size

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
#: Categories never written to the terminal (see the module docstring).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
#: A visible escape, as :func:`sanitize` writes it: kept whole when text is cut, shown dim.
ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _is_variation_selector(code: int) -> bool:
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def is_forbidden(char: str) -> bool:
    """Whether one character must never reach the terminal as it is."""
    code = ord(char)
    return unicodedata.category(char) in FORBIDDEN_CATEGORIES or _is_variation_selector(code)


def escape(char: str) -> str:
    """``"\\x1b"``, ``"\\u202e"`` or ``"\\U000e0001"``: a character shown, not obeyed."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize(text: str) -> str:
    """``text`` with every forbidden character replaced by its visible escape.

    Idempotent (an escape is printable ASCII), and cheap for the common case: a
    printable string that holds no variation selector is returned as it is.
    """
    if text.isprintable() and not _has_selector(text):
        return text  # str.isprintable() is False for every forbidden category
    return "".join(escape(c) if is_forbidden(c) else c for c in text)


def _has_selector(text: str) -> bool:
    if text.isascii():
        return False
    return any(_is_variation_selector(ord(c)) for c in text)


def cells(text: str) -> int:
    """How many terminal cells ``sanitize(text)`` occupies."""
    return sum(get_character_cell_size(c) for c in sanitize(text))


def _atoms(text: str) -> list[tuple[str, int]]:
    """Sanitized ``text`` as (piece, cells): single characters, and escapes kept whole."""
    atoms: list[tuple[str, int]] = []
    position = 0
    for match in ESCAPE.finditer(text):
        atoms += [(c, get_character_cell_size(c)) for c in text[position : match.start()]]
        atoms.append((match.group(), len(match.group())))
        position = match.end()
    atoms += [(c, get_character_cell_size(c)) for c in text[position:]]
    return atoms


def _take(atoms: list[tuple[str, int]], width: int) -> tuple[list[str], int]:
    """The pieces of the longest run of ``atoms`` that fits ``width`` cells, and its width."""
    taken: list[str] = []
    used = 0
    for piece, size in atoms:
        if used + size > width:
            break
        taken.append(piece)
        used += size
    return taken, used


def fit(
    text: str,
    width: int,
    *,
    where: Literal["end", "middle"] = "end",
    pad: bool = True,
) -> str:
    """Sanitize ``text`` and make it at most ``width`` cells, cut with ``…``.

    ``where="end"`` keeps the start; ``"middle"`` keeps the start and the end (for ids
    and URLs, whose ends tell them apart). With ``pad`` the result is exactly ``width``
    cells, spaces added on the right. Escapes and wide characters are never split: a
    cut that would fall inside one falls before it.
    """
    width = max(width, 0)
    text = sanitize(text)
    if text.isascii() and len(text) <= width:  # the common case: nothing to measure
        return text.ljust(width) if pad else text
    atoms = _atoms(text)
    total = sum(size for _, size in atoms)
    if total <= width:
        result, used = text, total
    elif width == 0:
        result, used = "", 0
    elif where == "middle" and width >= 3:
        head, head_used = _take(atoms, (width - 1) - (width - 1) // 2)
        tail, tail_used = _take(atoms[::-1], (width - 1) // 2)
        result = "".join(head) + ELLIPSIS + "".join(reversed(tail))
        used = head_used + 1 + tail_used
    else:
        head, head_used = _take(atoms, width - 1)
        result, used = "".join(head) + ELLIPSIS, head_used + 1
    return result + " " * (width - used) if pad else result
