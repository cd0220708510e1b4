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


def themed(spec: str, variables: Mapping[str, str]) -> Style:
    """``"bold $text-success"`` in a theme (its CSS variables) as a Rich style."""
    words = spec.split()
    colours = [variables.get(w[1:], "") if w.startswith("$") else w for w in words]
    try:
        return Style.parse(" ".join(c for c in colours if c))
    except Exception:  # a theme whose colour Rich cannot read: plain, still readable
        return Style()


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
