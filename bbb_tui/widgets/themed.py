"""Colours by meaning, taken from the Textual theme in use, so every theme reads well.

Widgets say what a cell means (``ok``, ``warn``, ``error``, ``busy``...), never which
colour it is; :func:`palette_of` turns meanings into Rich styles from the theme's own
variables (``$text-success`` and friends, which Textual makes readable on the theme's
background, dark or light). With ``NO_COLOR`` Textual drops the colours; bold, dim and
reverse remain, so the meanings that matter most carry one of those too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.style import Style
from textual.app import App
from textual.color import Color

#: Meaning -> a style spec over theme variables.
ROLES: dict[str, str] = {
    "ok": "$text-success",
    "warn": "$text-warning",
    "error": "$text-error",
    "busy": "$text-primary",
    "accent": "$text-accent",
    "key": "bold $text-primary",  # a key name in the help, a label on a details screen
    "alarm": "bold $text-error",
    "dim": "dim",
}
Palette = Mapping[str, Style]


#: The least contrast (WCAG ratio) a coloured word keeps against the backgrounds it is
#: drawn on (WCAG asks 3 for large or bold text, 4.5 for body text).
MIN_CONTRAST = 3.0
_GROUNDS = ("background", "surface", "panel")  # the screen, the table, its zebra rows


def themed(spec: str, variables: Mapping[str, str]) -> Style:
    """``"bold $text-success"`` in a theme (its CSS variables) as a Rich style; a colour
    too faint on the theme's backgrounds is moved toward its foreground until it reads
    (some themes' success or warning colours are pale on their light panels)."""
    words = []
    for word in spec.split():
        if word.startswith("$"):
            word = readable(variables.get(word[1:], ""), variables)
        words.append(word)
    try:
        return Style.parse(" ".join(w for w in words if w))
    except Exception:  # a theme whose colour Rich cannot read: plain, still readable
        return Style()


def contrast(a: Color, b: Color) -> float:
    """The WCAG contrast ratio of two opaque colours (1 to 21)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _luminance(colour: Color) -> float:
    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = colour.rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def readable(value: str, variables: Mapping[str, str]) -> str:
    """``value`` (a colour), or the nearest blend toward the theme's foreground that
    keeps MIN_CONTRAST on every background the widgets use; as is if unparsable."""
    try:
        colour = Color.parse(value)
        grounds = [Color.parse(variables[name]) for name in _GROUNDS if name in variables]
        foreground = Color.parse(variables.get("foreground", ""))
    except Exception:
        return value
    for step in range(11):
        shown = colour.blend(foreground, step / 10)
        if all(contrast(ground + shown, ground) >= MIN_CONTRAST for ground in grounds):
            return shown.hex
    return foreground.hex


def palette(variables: Mapping[str, str]) -> dict[str, Style]:
    return {role: themed(spec, variables) for role, spec in ROLES.items()}


_PALETTES: dict[str, dict[str, Style]] = {}


def palette_of(app: App[Any]) -> Palette:
    """The palette of ``app``'s theme now (built once per theme)."""
    found = _PALETTES.get(app.theme)
    if found is None:
        found = _PALETTES[app.theme] = palette(app.get_css_variables())
    return found


def cursor_style(variables: Mapping[str, str], *, no_color: bool = False) -> Style:
    """A cursor line in a theme: its block cursor, with text that reads on it
    (reverse video with NO_COLOR, where a background colour would not show)."""
    try:
        if no_color:
            raise ValueError
        background = Color.parse(variables["block-cursor-background"])
    except (KeyError, ValueError):
        return Style(reverse=True, bold=True)
    text = background + background.get_contrast_text(0.95)
    return Style(bgcolor=background.rich_color, color=text.rich_color, bold=True)
