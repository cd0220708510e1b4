"""Snapshot tests of the screens, deterministic: fixed clocks, scripted traffic, no network."""

from __future__ import annotations

from typing import Any

import pytest
from textual.geometry import Offset
from textual.pilot import Pilot
from textual.selection import Selection

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.client import ConnState, ConnStatus
from bridge.core.protocol import GREETING, EventType, encode_event, encode_session

NOW = 1000.0  # the monotonic clock, frozen
WALL = 1_795_000_000.0  # the wall clock, frozen (times shown in the log and table)
URL = "ws://localhost:8081"


def scripted_app(theme: str | None = None) -> BbbApp:
    """An app fed with a realistic mix of traffic, every clock frozen."""
    settings = TuiSettings(url=URL, theme=theme)
    return BbbApp(settings, connect=False, clock=lambda: NOW, wallclock=lambda: WALL)


async def play_traffic(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, BbbApp)
    app.on_status(ConnStatus(ConnState.CONNECTED, URL, connected_at=NOW - 83, connections=1))
    events = [(EventType.JOB_REFRESH, "1")]
    events += [(EventType.SINGLE_JOB_REFRESH, f"job-{i}") for i in range(1, 6)]
    events += [
        (EventType.QUEUE_REFRESH, "emails"),
        (EventType.SINGLE_QUEUE_REFRESH, "payments"),
        (EventType.JOB_SCHEDULER_REFRESH, "nightly-report"),
        (EventType.JOB_LOG_REFRESH, "job-3"),
        (EventType.LOG_REFRESH, "job-3"),
    ]
    frames = [GREETING.decode(), encode_session("6745f0a2-9c1e7b3d", 41).decode()]
    frames += [encode_event(t, ident, 42 + n).decode() for n, (t, ident) in enumerate(events)]
    frames += ['{"type": "queue-paused", "data": {"queueName": "emails"}}', "not json at all"]
    app.monitor.feed_many(frames)
    app.cache.tick(NOW + 1)  # every fetch done
    app.flush(force=True)
    await pilot.pause()


SIZES = [(60, 15), (80, 24), (120, 40), (200, 60)]


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_main_screen(snap_compare: Any, size: tuple[int, int], theme: str) -> None:
    """The main screen at every size, dark and light: the state with its details always
    on the first line, every table column readable (the narrow ones dropped), the table
    as tall as its rows allow, every colour from the theme."""
    assert snap_compare(scripted_app(theme), terminal_size=size, run_before=play_traffic)


def test_main_screen_without_colour(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: no colour at all, and the states, cursor and focus still read."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def select(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        await pilot.press("k", "k")

    assert snap_compare(scripted_app(), terminal_size=(80, 24), run_before=select)


def test_selected_text_reads_in_a_light_theme(snap_compare: Any) -> None:
    """Text selected with the mouse keeps a readable colour (Textual's default drew it in
    the background colour in light themes), beside the cursor line."""

    async def select(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        app = pilot.app
        assert isinstance(app, BbbApp)
        app.screen.selections = {app.event_log: Selection(Offset(0, 3), Offset(40, 6))}
        await pilot.press("k", "k")

    app = scripted_app("textual-light")
    assert snap_compare(app, terminal_size=(100, 30), run_before=select)


def test_details_of_a_log_line(snap_compare: Any) -> None:
    """k k Enter: the frame, seq, arrival and invalidated keys of the line selected."""

    async def open_line(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        await pilot.press("k", "k", "k", "k", "k", "enter")

    assert snap_compare(scripted_app(), terminal_size=(100, 30), run_before=open_line)


def test_history_of_a_cache_key(snap_compare: Any) -> None:
    """Tab, Down, Enter: the fetches of jobs/stats, with what led to each."""

    async def open_key(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        await pilot.press("tab", "down", "enter")

    assert snap_compare(scripted_app(), terminal_size=(100, 30), run_before=open_key)


def test_help_screen(snap_compare: Any) -> None:
    """? shows every key."""

    async def open_help(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        await pilot.press("question_mark")

    assert snap_compare(scripted_app(), terminal_size=(120, 40), run_before=open_help)


def test_help_screen_small_terminal(snap_compare: Any) -> None:
    """At 80x24 the help box fits the screen, border and all, and scrolls."""

    async def open_help(pilot: Pilot[Any]) -> None:
        await play_traffic(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(scripted_app(), terminal_size=(80, 24), run_before=open_help)
