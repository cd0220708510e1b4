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
  terminals and not in others, so a row that measures right here is wrong there;
- characters whose width Rich (which lays out every Textual screen) and the usual
  terminal rule (East Asian Wide/Fullwidth: 2, combining: 0, else 1; glibc's and
  tmux's) disagree on: spacing vowel signs such as Devanagari U+093E, emoji skin-tone
  modifiers, Hangul fillers, some symbols. Shown raw, each would shift the rest of its
  row by a cell in one or the other.

What remains has a known width per character, so text can be cut and padded by
terminal cells (:func:`fit`), never by code points; escapes are never cut in half.
Pure: no I/O. Rich markup is not interpreted here or by the callers (plain text stays
plain: ``[bold]`` is shown as typed).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

from rich.cells import get_character_cell_size

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
#: Categories never written to the terminal (see the module docstring).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
#: A visible escape, as :func:`sanitize` writes it: kept whole when text is cut, shown dim.
ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _is_variation_selector(code: int) -> bool:
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


@lru_cache(maxsize=4096)
def is_forbidden(char: str) -> bool:
    """Whether one character must never reach the terminal as it is."""
    category = unicodedata.category(char)
    if category in FORBIDDEN_CATEGORIES or _is_variation_selector(ord(char)):
        return True
    return char >= "\u0300" and get_character_cell_size(char) != _usual_width(char, category)


def _usual_width(char: str, category: str) -> int:
    """The width most terminals give a character (wcwidth's rule, ambiguous as narrow)."""
    if category in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


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

    Idempotent (an escape is printable ASCII), and cheap for the common case: printable
    ASCII is returned as it is, in C.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(escape(c) if is_forbidden(c) else c for c in text)


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
    keep = 8 * width + 64  # characters that surely fill ``width`` cells, or are all there is
    if len(text) > 2 * keep + 1:  # cut before the work: a 17 MB name costs what 250 bytes do
        first, last = text[:keep], text[-keep:] if where == "middle" else ""
        text = first + ELLIPSIS + last
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
