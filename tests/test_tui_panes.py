"""The log and the table as tools (Pilot, against a real bridge and Redis where events
flow): select and open a log line, copy it, save the kept events and replay them, move
about the cache table, sort it, open a key's history, and the command palette."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.app import App, ComposeResult
from textual.command import CommandList, CommandPalette
from textual.screen import Screen
from textual.widgets import Static

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.details import message_of
from bbb_tui.monitor import KEEP_FRAME
from bbb_tui.queue_stats import QueueCounts, QueueRow
from bbb_tui.recording import read_recording
from bbb_tui.screens import PANES, DetailsScreen, HistoryScreen, binding_rows
from bbb_tui.widgets.bullmq import QueuesView
from bbb_tui.widgets.eventlog import EventLog
from bbb_tui.widgets.querytable import COLUMNS, QueryTable, layout
from bridge.core.protocol import Event, EventType, encode_event, parse_frame
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import Publisher, wait_for


class Copying(BbbApp):
    """The real app, keeping what it would have put on the clipboard."""

    copied: list[str]

    def copy_to_clipboard(self, text: str) -> None:
        self.copied = [*getattr(self, "copied", []), text]


def on_bridge(bridge: Bridge, redis_server: RedisServer, prefix: str, **more: object) -> Copying:
    url = f"ws://127.0.0.1:{bridge.port}"
    settings = TuiSettings(url=url, redis_url=redis_server.url, prefix=prefix, **more)  # type: ignore[arg-type]
    return Copying(settings)


def offline(**more: object) -> Copying:
    return Copying(TuiSettings(**more), connect=False)  # type: ignore[arg-type]


def screen_text(screen: Screen[Any]) -> str:
    """What a screen's Static widgets say, as plain text (tables included), wide enough
    that nothing wraps."""
    console = Console(width=1000, record=True, file=io.StringIO())
    for static in screen.query(Static):
        console.print(static.content)
    return console.export_text()


def saved_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("bbb-events-*.jsonl"))


def feed(app: BbbApp, *frames: bytes | str) -> None:
    app.monitor.feed_many(list(frames))
    app.flush(force=True)


async def test_a_log_line_opens_with_its_frame_seq_and_keys(
    bridge: Bridge, redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """Up (or k) selects a line, Enter opens it: the frame as the bridge sent it (seq
    included), when it came, the keys it invalidated; y copies the frame; escape closes.
    A hostile id stays visible and harmless on the screen and in the clipboard."""
    app = on_bridge(bridge, redis_server, prefix)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: "session" in "\n".join(app.event_log.lines), what="a session")
        await publish(EventType.SINGLE_JOB_REFRESH, "job-\x1b]52;c;cHduZWQ=\x07-7")
        await publish(EventType.QUEUE_REFRESH, "emails")
        await wait_for(lambda: app.monitor.events == 2, what="2 events")
        app.flush(force=True)
        log = app.query_one(EventLog)
        assert log.has_focus and log.cursor is None
        await pilot.press("k", "up")  # the newest line, then the one before it
        assert log.cursor == len(log.lines) - 2 and not log.following
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailsScreen)
        shown = screen_text(screen)
        assert '"type": "single-job-refresh"' in shown and '"seq": 1' in shown
        assert "[jobs/single job-\\x1b]52;c;cHduZWQ=\\x07-7]" in shown  # escapes visible
        assert "\x1b" not in shown
        await pilot.press("y")
        frame = json.loads(app.copied[-1])
        assert frame == {"type": "single-job-refresh", "seq": 1,
                         "data": {"jobId": "job-\x1b]52;c;cHduZWQ=\x07-7"}}  # fmt: skip
        assert app.copied[-1].isascii() and "\x1b" not in app.copied[-1]  # escaped JSON
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailsScreen)
        await pilot.press("j", "j")  # past the newest line: following again
        assert log.following and log.cursor is None


async def test_a_click_selects_a_line_and_a_double_click_opens_it() -> None:
    app = offline()
    async with app.run_test(size=(100, 30)) as pilot:
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"j{n}") for n in range(3)))
        await pilot.pause()
        log = app.query_one(EventLog)
        await pilot.click(EventLog, offset=(20, 2))  # inside the border: line 1
        assert log.cursor == 1
        await pilot.click(EventLog, offset=(20, 3), times=2)
        assert isinstance(app.screen, DetailsScreen) and app.screen.entry[1].endswith("j2")


async def test_the_cursor_stays_on_its_line_as_old_lines_drop_off() -> None:
    """Looking back at a full log, new lines push old ones out: the selected line stays
    selected and where it was on the screen."""
    app = offline(log_lines=50)
    async with app.run_test(size=(100, 30)) as pilot:
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"old{n}") for n in range(50)))
        await pilot.pause()
        log = app.query_one(EventLog)
        await pilot.press("k", "k", "k")
        chosen, top = log.selected, log.scroll_offset.y
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"new{n}") for n in range(5)))
        await pilot.pause()
        assert log.selected == chosen and log.scroll_offset.y == top - 5
        assert "5 new" in str(log.border_title)


async def test_s_saves_the_filtered_events_and_replay_reads_them(tmp_path: Path) -> None:
    """s writes the kept events, as filtered, as a recording (not the monitor's own lines),
    says where, and --replay plays it back to the same lines."""
    app = offline(save_dir=str(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        feed(app, encode_event(EventType.JOB_REFRESH, "a", 1),
             encode_event(EventType.QUEUE_REFRESH, "q", 2), "not json",
             encode_event(EventType.SINGLE_JOB_REFRESH, "b", 3))  # fmt: skip
        app.monitor.note("a line of the monitor's own")
        app.set_filter(frozenset({"job-refresh", "single-job-refresh", "malformed", "info"}))
        await pilot.pause()
        await pilot.press("s")
        (saved,) = saved_in(tmp_path)
        await wait_for(lambda: str(saved) in "\n".join(app.event_log.lines), what="said where")
        frames = [frame for _, frame in read_recording(str(saved))]
        assert [json.loads(f)["data"] for f in frames if f.startswith("{")] == [
            {"jobId": "a"},
            {"jobId": "b"},
        ]
        assert "not json" in frames
        kept = [line[14:] for line in app.event_log.lines if " info " not in line]
    replayed = BbbApp(TuiSettings(replay=str(saved), replay_speed=0))
    async with replayed.run_test(size=(120, 40)):
        await wait_for(lambda: "replay finished" in "\n".join(replayed.event_log.lines))
        again = [line[14:] for line in replayed.event_log.lines if " info " not in line]
    assert again == kept


async def test_s_in_a_folder_it_cannot_write_says_so(tmp_path: Path) -> None:
    app = offline(save_dir=str(tmp_path / "missing"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await wait_for(lambda: any("Cannot save" in str(n.message) for n in app._notifications))
        assert app.is_running


async def test_the_table_moves_sorts_and_opens_a_keys_history() -> None:
    """Tab focuses the table; every per-id query has a row; j/k/G move; o sorts by the
    next column, O reverses, a click on a header sorts by it; Enter shows the key's
    fetches with what led to each."""
    now = [100.0]
    app = Copying(TuiSettings(fetch_latency=0.1), connect=False, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        ids = [f"job-{n:02d}" for n in range(30)]
        feed(app, *(encode_event(EventType.SINGLE_JOB_REFRESH, i) for i in ids))
        feed(app, *(encode_event(EventType.SINGLE_JOB_REFRESH, "job-07") for _ in range(4)))
        now[0] += 1
        app.flush(force=True)
        table = app.query_one(QueryTable)
        assert len(table.order) == 4 + 30  # the list queries, then every per-id one
        assert table.order[4] == "jobs/single job-07"  # the most recent first
        await pilot.press("tab")
        assert table.has_focus and table.cursor == 0
        await pilot.press("G")
        assert table.cursor == 33
        await pilot.pause()
        assert table.scroll_offset.y > 0  # scrolled to keep it in sight
        await pilot.press("o")  # by query key
        assert table.sort_column == "query key"
        assert table.order[:2] == ["jobs/single job-00", "jobs/single job-01"]
        await pilot.press("O")
        assert table.order[0] == "queues/table"
        # The third column's header, inside the border (a click's offset includes it).
        x = 1 + 1 + sum(width for name, width in layout(table.size.width - 1)[:2])
        await pilot.click(QueryTable, offset=(x + 2, 1))
        assert table.sort_column == COLUMNS[2] == "invalidated" and not table.sort_reverse
        await pilot.click(QueryTable, offset=(x + 2, 1))
        assert table.sort_reverse and table.order[0] == "jobs/single job-07"
        await pilot.press("home", "enter")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        shown = screen_text(screen)
        assert '["jobs/single", "job-07"]' in shown
        assert "5 times" in shown  # one fetch for the five invalidations
        assert "job job-07: updated 5x" in shown


def test_narrow_tables_drop_the_least_useful_columns_first() -> None:
    assert [name for name, _ in layout(160)] == list(COLUMNS)
    narrow = dict(layout(78))
    assert "took" not in narrow and "last fetch" not in narrow and narrow["data"] >= 24
    assert [name for name, _ in layout(40)] == ["query key", "status", "data"]


async def test_ctrl_p_offers_every_action_by_name(tmp_path: Path) -> None:
    app = offline(save_dir=str(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"save the kept")
        commands = app.screen.query_one(CommandList)

        def first_is_save() -> bool:
            return commands.option_count > 0 and "Save the kept" in str(
                commands.get_option_at_index(0).prompt
            )

        await wait_for(first_is_save, what="the save command found")
        await pilot.press("enter")
        await wait_for(lambda: bool(saved_in(tmp_path)), what="saved from the palette")
        titles = {cmd.title for cmd in app.get_system_commands(app.screen)}
    assert {"Save the kept events (as filtered) to a JSON Lines file --replay reads",
            "In a table: sort by the next column (or click a header; again: reversed)",
            "Theme"} <= titles  # fmt: skip


def test_the_panes_keys_name_actions_they_have() -> None:
    """Every key the help, the palette and the README list for a pane runs an action that
    pane has (a renamed action would do nothing, silently)."""
    for _, pane in PANES:
        for _, _, action in binding_rows(pane.BINDINGS, str):
            name = action.split("(")[0]
            assert callable(getattr(pane, f"action_{name}", None)), (pane, action)


async def test_a_synced_table_stays_where_it_was_scrolled() -> None:
    """New data does not pull the view back to the cursor's row: only moving or sorting
    does (the mouse wheel works while events flow)."""
    app = offline()
    async with app.run_test(size=(120, 30)) as pilot:
        feed(app, *(encode_event(EventType.SINGLE_JOB_REFRESH, f"j{n}") for n in range(40)))
        await pilot.pause()
        table = app.query_one(QueryTable)
        await pilot.press("tab", "tab")  # into the table (its cursor on row 0), and out
        assert not table.has_focus and table.cursor == 0
        table.scroll_to(y=20, animate=False, immediate=True)
        feed(app, encode_event(EventType.SINGLE_JOB_REFRESH, "j-new"))
        await pilot.pause()
        assert table.scroll_offset.y == 20


def deep_frame(depth: int) -> str:
    """An event whose data nests ``depth`` lists: parsed at the edge of Python's stack."""
    return '{"type":"job-refresh","data":{"jobId":"1","a":' + "[" * depth + "]" * depth + "}}"


async def test_hostile_lines_open_copy_and_save_without_harm(tmp_path: Path) -> None:
    """Data nested as deep as the parser allows, a malformed frame full of controls and a
    frame too big to keep: Enter, y and s each say what they can, and nothing breaks;
    the clipboard never gets a raw control character."""
    app = offline(save_dir=str(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        hostile = "not json \x1b]0;pwned\x07 \x9b2J \u202e \u2028 line"
        big = encode_event(EventType.SINGLE_JOB_REFRESH, "x" * (KEEP_FRAME + 1), 9)
        deepest = max(d for d in range(100, 3000, 10) if type(parse_frame(deep_frame(d))) is Event)
        feed(app, deep_frame(deepest), hostile, big)
        await pilot.pause()
        log = app.query_one(EventLog)
        shown = [type(message_of(entry[2])).__name__ for entry in log.entries]
        assert shown == ["Event", "Malformed", "NotKept"]
        for line in range(3):
            log.show_line(line)
            await pilot.press("y", "enter")
            assert isinstance(app.screen, DetailsScreen)
            await pilot.press("escape")
        assert all(not any(c in text for c in "\x1b\x07\x9b\u202e\u2028") for text in app.copied)
        assert any("too big to keep" in str(n.message) for n in app._notifications)
        await pilot.press("s", "s")  # twice in one second: two files
        await wait_for(lambda: len(saved_in(tmp_path)) == 2, what="two saves")
        await wait_for(lambda: "too big to keep or too deeply nested" in "\n".join(log.lines))
        assert app.is_running
    frames = [frame for _, frame in read_recording(str(saved_in(tmp_path)[0]))]
    assert hostile[:200] in frames  # the malformed frame as received (its first 200)


async def test_the_details_screen_copies_its_own_line() -> None:
    """y on a details screen copies the line it shows, whatever arrived meanwhile."""
    app = offline()
    async with app.run_test(size=(100, 30)) as pilot:
        feed(app, encode_event(EventType.JOB_REFRESH, "shown"))
        await pilot.pause()
        await pilot.press("enter")  # no cursor: the newest line
        feed(app, encode_event(EventType.JOB_REFRESH, "newer"))
        await pilot.press("y")
        assert json.loads(app.copied[-1])["data"] == {"jobId": "shown"}


async def test_a_selected_line_that_drops_off_is_no_longer_selected() -> None:
    app = offline(log_lines=5)
    async with app.run_test(size=(100, 30)) as pilot:
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"old{n}") for n in range(5)))
        await pilot.pause()
        await pilot.press(*["k"] * 6)  # the oldest line
        log = app.query_one(EventLog)
        assert log.cursor == 0
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"new{n}") for n in range(3)))
        assert log.cursor is None and not log.following


async def test_a_log_with_no_room_still_selects_a_real_line() -> None:
    app = offline()
    async with app.run_test(size=(20, 5)) as pilot:
        feed(app, *(encode_event(EventType.JOB_REFRESH, f"j{n}") for n in range(3)))
        await pilot.pause()
        await pilot.press("k")
        assert app.query_one(EventLog).cursor in (0, 1, 2)


async def test_the_queues_view_sorts_by_any_column_and_keeps_its_cursor() -> None:
    """o sorts by the next column (numbers as numbers), O reverses, a header click sorts by
    its column; the cursor stays on its queue as the rows are redrawn."""

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield QueuesView()

    def row(name: str, waiting: int) -> QueueRow:
        counts = {"waiting": waiting, "active": 0, "delayed": 0, "failed": 0, "completed": 0}
        return QueueRow(name, QueueCounts(counts, False), 0, 0, None, None, None, None, 0, 0, False)

    app = One()
    async with app.run_test(size=(160, 20)) as pilot:
        view = app.query_one(QueuesView)
        rows = [row("b", 9), row("a", 10), row("c", 2)]
        view.show(rows)
        view.focus()
        await pilot.press("down")  # on "a"

        def names() -> list[str]:
            return [str(view.get_row_at(n)[0]) for n in range(view.row_count)]

        await pilot.press("o")  # by queue
        assert names() == ["a", "b", "c"] and view.sort_column == "queue"
        assert str(view.get_row_at(view.cursor_row)[0]) == "a"
        await pilot.press("o")  # by wait, as numbers: 2 < 9 < 10
        assert names() == ["c", "b", "a"]
        await pilot.press("O")
        assert names() == ["a", "b", "c"]
        view.show(rows)  # a redraw keeps the order and the cursor
        assert names() == ["a", "b", "c"] and str(view.get_row_at(view.cursor_row)[0]) == "a"
