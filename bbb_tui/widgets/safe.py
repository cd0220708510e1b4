"""Outside text as Rich ``Text``: sanitized, cut by cells, its escapes dim.

Every widget that draws text it did not write itself goes through :func:`safe_text`
(or :func:`bridge.core.sanitize.sanitize` for plain strings), even when the text was
sanitized where it entered the app: defence in depth, and cheap when there is nothing
to do. ``Text`` is never parsed as markup, so ``[bold]`` in a job id stays literal.
"""

from __future__ import annotations

from typing import Literal

from rich.style import Style
from rich.text import Text

from bridge.core.sanitize import ESCAPE, fit, sanitize

ESCAPE_STYLE = Style(dim=True)


def dim_escapes(text: Text) -> Text:
    """Show the visible escapes in ``text`` dim (in place; returns ``text``)."""
    plain = text.plain
    if "\\" in plain:
        for match in ESCAPE.finditer(plain):
            text.stylize(ESCAPE_STYLE, match.start(), match.end())
    return text


def safe_text(
    text: str,
    width: int | None = None,
    *,
    style: str | Style = "",
    where: Literal["end", "middle"] = "end",
    pad: bool = True,
) -> Text:
    """``text`` safe to draw; with ``width``, cut (``…``) and padded to that many cells."""
    shown = sanitize(text) if width is None else fit(text, width, where=where, pad=pad)
    return dim_escapes(Text(shown, style=style, end=""))
