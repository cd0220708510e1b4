"""Snapshot tests of the screens, deterministic: fixed clocks, scripted traffic, no network."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

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


def test_main_screen(snap_compare: Any) -> None:
    """The main screen at 120x40: connection, counters, cache table, coloured log."""
    assert snap_compare(scripted_app(), terminal_size=(120, 40), run_before=play_traffic)


def test_main_screen_small_terminal(snap_compare: Any) -> None:
    """The main screen still reads at 80x24."""
    assert snap_compare(scripted_app(), terminal_size=(80, 24), run_before=play_traffic)


def test_main_screen_light(snap_compare: Any) -> None:
    """A light theme: every colour (kinds, zebra rows, states) comes from the theme."""
    app = scripted_app("textual-light")
    assert snap_compare(app, terminal_size=(120, 40), run_before=play_traffic)


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
