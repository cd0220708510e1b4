"""bbb-tui driven with Textual's Pilot against a real bridge on a real Redis."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme
from rich.console import Console
from textual.binding import Binding
from textual.content import Content
from textual.geometry import Offset
from textual.selection import Selection
from textual.widgets import Input, Static

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.cache import BASE_KEYS, key_label
from bbb_tui.cli import main as tui_main
from bbb_tui.client import ConnState, ConnStatus
from bbb_tui.monitor import KINDS, clock_time
from bbb_tui.recording import read_recording
from bbb_tui.screens import FilterScreen, HelpScreen, TokenScreen
from bbb_tui.widgets.eventlog import EventLog
from bbb_tui.widgets.querytable import QueryTable
from bbb_tui.widgets.themed import palette_of
from bridge.core.protocol import GREETING, EventType, encode_event
from bridge.serving.auth import issue_token
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer, free_port
from tests.helpers import Publisher, publish_count, start_bridge, wait_for


def make_app(port: int, redis_url: str, prefix: str, kind: type[BbbApp] = BbbApp) -> BbbApp:
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{port}", redis_url=redis_url, prefix=prefix, fetch_latency=0.05
    )
    return kind(settings)


def status_line(app: BbbApp) -> str:
    return str(app.query_one("#status", Static).render())


def log_text(app: BbbApp) -> str:
    return "\n".join(app.query_one(EventLog).lines)


def help_text(screen: object) -> str:
    """What the help screen's key table says, as plain text."""
    assert isinstance(screen, HelpScreen)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(screen.query_one("#help-keys", Static).content)
    return console.export_text()


def monitor_state(app: BbbApp) -> tuple[object, ...]:
    """What a monitor ends with: counts by type, invalidations per key, the event lines
    (without their arrival times)."""
    events = [entry[1][14:] for entry in app.monitor.entries if entry[0] != "info"]
    invalidations = {k: q.invalidations for k, q in app.cache.queries.items()}
    return app.monitor.events, dict(app.monitor.by_type), invalidations, events


def cell(app: BbbApp, key: str, column: str) -> str:
    return app.query_one(QueryTable).cells(key)[column]


class RecordingApp(BbbApp):
    """The real app, also keeping the text of every notification it raises."""

    def __init__(self, settings: TuiSettings) -> None:
        super().__init__(settings)
        self.notified: list[str] = []

    def notify(self, message: str, **kwargs: object) -> None:
        self.notified.append(f"{kwargs.get('title', '')}: {message}")
        super().notify(message, **kwargs)  # type: ignore[arg-type]


async def connected(app: BbbApp) -> None:
    await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10, what="connected")


@pytest.fixture
async def app_on_bridge(
    bridge: Bridge, redis_server: RedisServer, prefix: str
) -> AsyncIterator[BbbApp]:
    yield make_app(bridge.port, redis_server.url, prefix)


async def test_state_goes_connecting_then_connected(
    bridge: Bridge, redis_server: RedisServer, prefix: str
) -> None:
    """The status line says connecting first, then connected with the URL and uptime."""
    states: list[ConnState] = []

    class Recording(BbbApp):
        def on_status(self, status: ConnStatus) -> None:
            states.append(status.state)
            super().on_status(status)

    app = make_app(bridge.port, redis_server.url, prefix, Recording)
    async with app.run_test(size=(120, 40)):
        await connected(app)
        await wait_for(lambda: "connected" in status_line(app) and " up " in status_line(app))
        assert app.client.url in status_line(app)
    assert states[:2] == [ConnState.CONNECTING, ConnState.CONNECTED]


async def test_key_1_round_trips_through_redis_and_the_bridge(app_on_bridge: BbbApp) -> None:
    """Key 1 publishes job-refresh test-job-123; it comes back into the log and jobs/table."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("1")
        await wait_for(lambda: "jobId=test-job-123" in log_text(app), what="the event in the log")
        await wait_for(lambda: cell(app, "jobs/table", "invalidated") == "1")
        await wait_for(lambda: "test-job-123" in cell(app, "jobs/table", "data"))
        assert cell(app, "jobs/table", "status") == "fresh"
        assert cell(app, "queues/table", "invalidated") == "0"


async def test_key_a_fires_all_four_seed_events(app_on_bridge: BbbApp) -> None:
    """Key a publishes the four test events, and all four arrive."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("a")
        await wait_for(lambda: app.monitor.events == 4, what="four events")
        for needle in ("test-job-123", "test-queue", "test-scheduler-key", "test-job-456"):

            def shown(n: str = needle) -> bool:
                return n in log_text(app)

            await wait_for(shown, what=needle)


async def test_a_burst_of_500_costs_far_fewer_fetches(
    app_on_bridge: BbbApp, publish: Publisher
) -> None:
    """500 job events give 500 log lines and 500 invalidations, but only a handful of fetches."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)):
        await connected(app)
        await wait_for(lambda: cell(app, "jobs/table", "status") == "fresh", what="initial load")
        pipe = publish.client.pipeline(transaction=False)
        for i in range(500):
            pipe.publish(publish.channel(EventType.JOB_REFRESH), f"burst-{i}")
        await pipe.execute()
        await wait_for(lambda: app.monitor.events == 500, what="500 events")
        await wait_for(
            lambda: (
                cell(app, "jobs/table", "invalidated") == "500"
                and cell(app, "jobs/table", "status") == "fresh"
            ),
            what="the table to show the refetch after the burst",
        )
        await wait_for(
            lambda: sum("jobId=burst-" in line for line in app.query_one(EventLog).lines) == 500,
            what="500 log lines",
        )
        fetches = int(cell(app, "jobs/table", "fetches"))
        assert 2 <= fetches <= 10  # the initial load plus a handful, not 500


async def test_bridge_restart_shows_reconnecting_then_invalidates_everything(
    redis_server: RedisServer, prefix: str
) -> None:
    """Bridge gone: reconnecting with a countdown; bridge back: connected, all keys refetched."""
    bridge = await start_bridge(redis_server.url, prefix)
    port = bridge.port
    app = make_app(port, redis_server.url, prefix)
    try:
        async with app.run_test(size=(120, 40)):
            await connected(app)
            await bridge.stop()
            await wait_for(
                lambda: (
                    app.status.state is ConnState.RECONNECTING and "retry in" in status_line(app)
                ),
                10,
                what="reconnecting with a countdown",
            )
            assert "attempt" in status_line(app)
            before = {k: app.cache.queries[k].invalidations for k in BASE_KEYS}
            bridge = await start_bridge(redis_server.url, prefix, port=port)
            await wait_for(
                lambda: app.status.state is ConnState.CONNECTED and app.status.connections == 2,
                15,
                what="reconnected",
            )
            # A new bridge (a new epoch) cannot replay: it sends a resync, and all is refetched.
            await wait_for(
                lambda: all(app.cache.queries[k].invalidations == before[k] + 1 for k in BASE_KEYS),
                10,  # the resync follows the session at once; 5 s was tight on 2 busy cores
                what="every key invalidated once",
            )
            await wait_for(lambda: "epoch-changed" in log_text(app), what="the reason logged")
            assert "invalidated all" in log_text(app)
            await wait_for(lambda: cell(app, key_label(BASE_KEYS[0]), "status") == "fresh")
    finally:
        await bridge.stop()


async def test_a_redis_outage_behind_the_bridge_is_shown_until_it_is_over(
    own_redis: RedisServer, prefix: str
) -> None:
    """Redis killed behind the bridge: 'connected · Redis down Ns' in amber while it is down;
    back: the resync clears it and every key is refetched. Started during the outage, or
    resuming from before an earlier one, the TUI still shows it."""
    bridge = await start_bridge(own_redis.url, prefix)
    app = make_app(bridge.port, own_redis.url, prefix)
    late = make_app(bridge.port, own_redis.url, prefix)
    try:
        await bridge.source.wait_subscribed(10)
        async with app.run_test(size=(120, 40)):
            await connected(app)
            assert "Redis down" not in status_line(app)
            own_redis.kill()
            await wait_for(lambda: "Redis down" in status_line(app), 5, what="Redis down shown")
            assert "\N{MIDDLE DOT} Redis down" in status_line(app)
            status = app.query_one("#status", Static).render()
            assert isinstance(status, Content)
            warn = palette_of(app)["warn"].color
            assert warn is not None and warn.triplet is not None
            amber = [s for s in status.spans if ", ".join(map(str, warn.triplet)) in repr(s.style)]
            assert any("connected" in status.plain[s.start : s.end] for s in amber)
            assert "lost Redis" in log_text(app)
            async with late.run_test(size=(120, 40)):  # connects during the outage
                await connected(late)
                await wait_for(lambda: "Redis down" in status_line(late), 5, what="late sees it")
            before = app.cache.queries[BASE_KEYS[0]].invalidations
            own_redis.start()
            await wait_for(lambda: "Redis down" not in status_line(app), 10, what="cleared")
            assert "redis-reconnected" in log_text(app)
            await wait_for(lambda: app.cache.queries[BASE_KEYS[0]].invalidations > before)
            # A second outage, and a reconnect that resumes from before the first one: the
            # bridge says "down" (session) and "events were missed" (a resync without
            # down_seconds), which must not read as "back".
            own_redis.kill()
            await wait_for(lambda: "Redis down" in status_line(app), 5, what="down again")
            app.client.reconnect_now()
            await wait_for(lambda: app.status.connections == 2, 5, what="reconnected")
            await wait_for(lambda: log_text(app).count("(redis-reconnected)") == 2)
            app.flush(force=True)
            assert "Redis down" in status_line(app)
            own_redis.start()
            await wait_for(lambda: "Redis down" not in status_line(app), 10, what="cleared")
    finally:
        await bridge.stop()


async def test_malformed_frames_are_counted_and_do_not_disconnect() -> None:
    """Garbage from a server is counted and marked in the log; the connection stays up."""
    from websockets.asyncio.server import ServerConnection, serve

    hold = asyncio.Event()

    async def hostile(ws: ServerConnection) -> None:
        await ws.send(GREETING.decode())
        for frame in ("not json", "[]", '{"type": 1}', '{"type":"x","data":{}}', b"\xff\x00"):
            await ws.send(frame)
        await ws.send('{"type":"job-refresh","data":{"jobId":"ok"}}')
        await hold.wait()

    async with serve(hostile, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        app = make_app(port, "redis://127.0.0.1:1", "p:")
        try:
            async with app.run_test(size=(120, 40)):
                await wait_for(lambda: app.monitor.events == 1, what="the valid event")
                assert app.monitor.problems == 5
                assert app.status.state is ConnState.CONNECTED and app.status.connections == 1
                await wait_for(lambda: "5 unparsable/unknown" in status_line(app))
                await wait_for(lambda: log_text(app).count("malformed") == 4)
                assert "unknown" in log_text(app)
        finally:
            hold.set()  # let the server's handler end, whatever happened


async def test_firing_without_redis_notifies_and_breaks_nothing(bridge: Bridge) -> None:
    """With Redis unreachable from the TUI, key 1 says so in a notification; the app carries on."""
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{bridge.port}", redis_url=f"redis://127.0.0.1:{free_port()}"
    )
    app = RecordingApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("1")
        await wait_for(lambda: len(app.notified) == 1, what="an error notification")
        assert "Cannot publish test event: Redis at redis://127.0.0.1:" in app.notified[0]
        assert "is not reachable" in app.notified[0]
        await pilot.press("p")
        assert app.monitor.paused
        assert app.status.state is ConnState.CONNECTED


async def test_pause_holds_lines_and_resume_shows_them(
    app_on_bridge: BbbApp, publish: Publisher
) -> None:
    """p pauses the log (new lines counted, not shown); p again shows them."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("p")
        assert "PAUSED" in str(app.query_one(EventLog).border_title)
        await publish(EventType.QUEUE_REFRESH, "held-queue")
        await wait_for(lambda: app.monitor.held == 1, what="a held line")
        await wait_for(lambda: "log paused (1 new)" in status_line(app))
        assert "held-queue" not in log_text(app)
        await pilot.press("p")
        assert "held-queue" in log_text(app)
        assert "PAUSED" not in str(app.query_one(EventLog).border_title)


async def test_clear_and_filter(app_on_bridge: BbbApp, publish: Publisher) -> None:
    """c empties the log; the filter (f) shows only the chosen kinds."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await publish(EventType.JOB_REFRESH, "j-1")
        await publish(EventType.QUEUE_REFRESH, "q-1")
        await wait_for(lambda: "q-1" in log_text(app), what="both lines")
        await pilot.press("f")
        assert isinstance(app.screen, FilterScreen)
        app.set_filter(frozenset({"queue-refresh"}))
        assert "q-1" in log_text(app) and "j-1" not in log_text(app)
        assert "filter: 1 of" in str(app.query_one(EventLog).border_title)
        await pilot.press("escape")
        app.set_filter(frozenset(KINDS))
        assert "j-1" in log_text(app)
        await pilot.press("c")
        assert log_text(app) == ""
        assert app.monitor.events == 2  # counters are not reset by clearing the view


async def test_help_lists_every_key(app_on_bridge: BbbApp) -> None:
    """? opens a help screen that lists every key the app offers now: not the demo's + and -,
    nor t while no token is in use and the bridge has refused nothing, nor v without BullMQ
    data."""
    app = app_on_bridge
    hidden = {"rate(1.5)", "rate(0.6667)", "token", "view"}
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = help_text(app.screen)
        for binding in app.BINDINGS:
            assert isinstance(binding, Binding) and binding.tooltip
            assert (binding.tooltip in keys) is (binding.action not in hidden), binding
        assert "^c  copy the text selected with the mouse; quit when none is" in keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_read_only_hides_and_disables_the_publishing_keys(
    bridge: Bridge, redis_server: RedisServer, prefix: str, redis_client: aioredis.Redis
) -> None:
    """With read_only, 1-4 and a publish nothing, appear in neither footer nor help, and the
    status line says read-only."""
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{bridge.port}", redis_url=redis_server.url, prefix=prefix,
        read_only=True,
    )  # fmt: skip
    app = BbbApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        before = await publish_count(redis_client)
        await pilot.press("1", "2", "3", "4", "a")
        await pilot.press("question_mark")
        keys = help_text(app.screen)
        assert "publish" not in keys
        await pilot.press("escape")
        footer = " ".join(str(key.render()) for key in app.query("FooterKey"))
        assert "job" not in footer and "quit" in footer
        await wait_for(lambda: "read-only" in status_line(app))
        for worker in [w for w in app.workers if w.group == "publish"]:
            await worker.wait()
        assert await publish_count(redis_client) == before
        assert "published" not in log_text(app)


async def test_r_reconnects_now(app_on_bridge: BbbApp, bridge: Bridge) -> None:
    """r drops the connection and connects again at once, refetching every query."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("r")
        await wait_for(lambda: app.status.connections == 2, 5, what="a second connection")
        assert app.status.state is ConnState.CONNECTED


async def test_after_a_refusal_r_tries_again_and_t_takes_a_new_token(
    redis_server: RedisServer, prefix: str
) -> None:
    """Refused (401): r starts a new attempt (which succeeds once the bridge runs without
    auth), and t takes a new token and reconnects with it: no restart of the TUI."""
    secret = "tui-test-secret-0123456789-abcdefghijk"
    bridge = await start_bridge(redis_server.url, prefix, auth_secret=secret)
    port = bridge.port
    app = make_app(port, redis_server.url, prefix)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: "refused: HTTP 401" in status_line(app), 10, what="401")
            assert app.status.state is ConnState.DISCONNECTED
            await pilot.press("t")
            assert isinstance(app.screen, TokenScreen)
            app.screen.query_one(Input).value = issue_token(secret, ttl=60)  # as pasted
            await pilot.press("enter")
            await connected(app)
            assert "new token" in log_text(app)
            await bridge.stop()  # back without auth: an old token is simply not needed
            app.client.token = "expired-or-wrong"
            bridge = await start_bridge(redis_server.url, prefix, auth_secret=secret, port=port)
            await pilot.press("r")  # cut the retry wait short
            await wait_for(lambda: app.status.state is ConnState.DISCONNECTED, 40, what="401")
            await bridge.stop()
            bridge = await start_bridge(redis_server.url, prefix, port=port)
            await pilot.press("r")
            await connected(app)
            assert "trying again (r)" in log_text(app)
    finally:
        await bridge.stop()


async def test_a_token_file_is_read_before_every_attempt(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """--token-file: a missing file, or one that is not text, is said and retried; once it
    holds a token, connected."""
    secret = "tui-test-secret-0123456789-abcdefghijk"
    bridge = await start_bridge(redis_server.url, prefix, auth_secret=secret)
    token_file = tmp_path / "token"
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{bridge.port}", redis_url=redis_server.url, prefix=prefix,
        token_file=str(token_file),
    )  # fmt: skip
    app = BbbApp(settings)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: "cannot read the token file" in status_line(app), 10)
            token_file.write_bytes(b"\xff\xfe")  # rotated into garbage: said, no traceback
            await pilot.press("r")
            await wait_for(lambda: "is not text" in status_line(app), 10)
            token_file.write_text(issue_token(secret, ttl=60))
            await pilot.press("r")
            await connected(app)
    finally:
        await bridge.stop()


@pytest.mark.parametrize("scheme,hint", [("wss", "plain ws:// port"), ("ws", "try wss://")])
async def test_tls_on_the_wrong_port_says_what_it_probably_is(
    scheme: str, hint: str, bridge: Bridge, tmp_path: Path
) -> None:
    """wss:// to a plain port, or ws:// to a TLS port: the status line says which it likely is."""
    if scheme == "wss":
        port = bridge.port
    else:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        tls_server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
        port = tls_server.sockets[0].getsockname()[1]
    app = BbbApp(TuiSettings(url=f"{scheme}://127.0.0.1:{port}"))
    async with app.run_test(size=(120, 40)):
        await wait_for(lambda: hint in (app.status.error or ""), 10, what=hint)
    if scheme == "ws":
        tls_server.close()


async def test_q_quits_and_says_goodbye(
    app_on_bridge: BbbApp, bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """q quits the app, which closes its connection properly (1001), not by vanishing."""
    caplog.set_level(logging.INFO, logger="bridge")
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await pilot.press("q")
    assert app.return_code == 0
    await wait_for(lambda: len(bridge.hub) == 0, what="the bridge to see it go")
    assert "(code 1001;" in caplog.text


def test_cli_rejects_a_wrong_url_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """bbb-tui with a URL that is not ws:// says so in one line and exits 2."""
    from bbb_tui.cli import main

    assert main(["--url", "http://localhost:8081"], environ={}) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbb-tui: error: --url: must be a ws:// or wss:// URL")
    assert "Traceback" not in err


def test_cli_reads_the_frontends_environment() -> None:
    """The URL comes from BBB_WEBSOCKET_URL, else the frontend's variables; Redis from REDIS_*."""
    from bbb_tui.cli import parse, settings_from

    env = {"NEXT_PUBLIC_WEBSOCKET_URL": "ws://bridge:9000", "REDIS_HOST": "cache"}
    settings = settings_from(parse([], env))
    assert (settings.url, settings.redis_url) == ("ws://bridge:9000", "redis://cache:6379")


async def test_a_filter_chosen_while_paused_applies_on_resume(
    app_on_bridge: BbbApp, publish: Publisher
) -> None:
    """Changing the filter while paused leaves the log as it is; resuming applies it to all."""
    app = app_on_bridge
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app)
        await publish(EventType.JOB_REFRESH, "j-old")
        await wait_for(lambda: "j-old" in log_text(app), what="the first line")
        await pilot.press("p")
        app.set_filter(frozenset({"queue-refresh"}))
        assert "j-old" in log_text(app)  # paused: unchanged
        await publish(EventType.QUEUE_REFRESH, "q-new")
        await wait_for(lambda: app.monitor.held == 1, what="a held line")
        await pilot.press("p")
        assert "j-old" not in log_text(app)
        assert "q-new" in log_text(app)


async def test_the_log_follows_until_you_look_back_and_again_after_end() -> None:
    """Following by default; PageUp stops it where you are (new lines counted in the
    title); End follows again; a resize, either way, keeps a following log following."""
    app = BbbApp(TuiSettings(), connect=False)

    def burst(n: int) -> None:
        app.monitor.feed_many([encode_event(EventType.JOB_REFRESH, f"j{i}") for i in range(n)])
        app.flush(force=True)

    async with app.run_test(size=(120, 40)) as pilot:
        log = app.query_one(EventLog)

        def at_end() -> bool:
            return log.scroll_offset.y == log.max_scroll_y

        burst(200)
        await pilot.pause()
        assert log.following and at_end() and "following" in str(log.border_title)
        log.focus()
        await pilot.press("pageup")
        where = log.scroll_offset.y
        burst(50)
        await pilot.pause()
        assert not log.following and log.scroll_offset.y == where
        assert "50 new (End follows)" in str(log.border_title)
        await pilot.press("end")
        await pilot.pause()
        assert log.following and at_end()
        for size in ((80, 24), (160, 50), (100, 30)):
            await pilot.resize_terminal(*size)
            burst(30)
            await pilot.pause()
            await pilot.pause()
            assert log.following and at_end(), size


async def test_ctrl_c_copies_a_selection_and_quits_without_one() -> None:
    """With text selected (a log line), Ctrl+C copies it and the app goes on; without,
    Ctrl+C quits."""
    copied: list[str] = []

    class Copying(BbbApp):
        def copy_to_clipboard(self, text: str) -> None:
            copied.append(text)

    app = Copying(TuiSettings(), connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.monitor.feed(encode_event(EventType.JOB_REFRESH, "job-to-copy"))
        app.flush(force=True)
        await pilot.pause()
        log = app.query_one(EventLog)
        row = next(n for n, line in enumerate(log.lines) if "job-to-copy" in line)
        app.screen.selections = {log: Selection(Offset(0, row), Offset(200, row))}
        await pilot.press("ctrl+c")
        assert app.is_running and len(copied) == 1 and "job-to-copy" in copied[0]
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


async def test_search_finds_marks_and_steps_through_matches() -> None:
    """/ then text: the newest match is shown (following stops) and marked; n goes to
    older matches, N to newer; a capital letter makes it match case; escape clears."""
    app = BbbApp(TuiSettings(), connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        ids = [f"job-{n}" for n in range(300)]
        app.monitor.feed_many([encode_event(EventType.SINGLE_JOB_REFRESH, i) for i in ids])
        app.flush(force=True)
        await pilot.pause()
        log = app.query_one(EventLog)
        await pilot.press("slash")
        await pilot.press(*"job-1[0-9]$", "enter")
        await pilot.pause()
        assert "search 'job-1[0-9]$': 10 of 10" in str(log.border_title)
        assert not log.following
        shown = log.lines[log.scroll_offset.y : log.scroll_offset.y + log.size.height]
        assert any(line.endswith("jobId=job-19") for line in shown)
        await pilot.press("n", "n")
        assert "8 of 10" in str(log.border_title)
        await pilot.press("N")
        assert "9 of 10" in str(log.border_title)
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"JOB-", "enter")  # the last one, cleared
        await pilot.pause()
        assert "search 'JOB-': no match" in str(log.border_title)
        await pilot.press("escape")
        assert "search" not in str(log.border_title)
        await pilot.press("end")
        assert log.following


async def test_a_recording_replays_what_was_received(
    bridge: Bridge, redis_server: RedisServer, prefix: str, publish: Publisher, tmp_path: Path
) -> None:
    """--record appends every frame with its arrival time (plain JSON Lines); --replay
    plays it back through the same monitor, with no bridge: the same events, in order."""
    path = str(tmp_path / "rec.jsonl")
    settings = TuiSettings(url=f"ws://127.0.0.1:{bridge.port}", redis_url=redis_server.url,
                           prefix=prefix, record=path)  # fmt: skip
    app = BbbApp(settings)
    async with app.run_test(size=(120, 40)):
        await connected(app)
        for n in range(5):
            await publish(EventType.SINGLE_JOB_REFRESH, f"rec-{n}\x1b]0;title\x07")
        await wait_for(lambda: app.monitor.events == 5, what="5 events")
        live = monitor_state(app)
    recorded = list(read_recording(path))  # (time, frame) of each JSON line
    assert all(time.time() - 60 < when <= time.time() for when, _ in recorded)
    assert sum("rec-" in frame for _, frame in recorded) == 5

    replayed = BbbApp(TuiSettings(replay=path, replay_speed=0))
    async with replayed.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: "replay finished" in log_text(replayed), 5, what="the end")
        assert replayed.monitor.events == 5
        assert "replay of" in status_line(replayed)
        text = log_text(replayed)
        assert [f"rec-{n}" in text for n in range(5)] == [True] * 5
        assert "\x1b" not in text and "\\x1b]0;title" in text
        assert replayed.check_action("fire", (0,)) is False  # no publishing, no bridge
        assert monitor_state(replayed) == live  # the replayed monitor ends where live did
        await pilot.press("q")


async def test_a_replay_shows_when_each_event_arrived_then(tmp_path: Path) -> None:
    """Replayed lines carry the times they were recorded at (what happened at 03:12), not
    the time of the replay; gaps are kept at --speed 1 (capped)."""
    path = tmp_path / "old.jsonl"
    then = 1_795_000_000.25  # long ago
    frames = [encode_event(EventType.SINGLE_JOB_REFRESH, f"old-{n}").decode() for n in range(3)]
    path.write_text(
        "".join(json.dumps({"t": then + n * 0.3, "frame": f}) + "\n" for n, f in enumerate(frames))
    )
    app = BbbApp(TuiSettings(replay=str(path), replay_speed=1))
    async with app.run_test(size=(120, 40)):
        await wait_for(lambda: "replay finished" in log_text(app), 5, what="the end")
        lines = [line for line in app.query_one(EventLog).lines if "old-" in line]
    assert [line[:12] for line in lines] == [clock_time(then + n * 0.3) for n in range(3)]


def test_recording_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    for argv, said in (
        (["--replay", str(tmp_path / "none.jsonl")], "cannot read"),
        (["--replay", str(bad)], "line 1: not a recording line"),
        (["--record", str(tmp_path / "no-dir" / "x.jsonl")], "--record: cannot write"),
        (["--save-dir", str(tmp_path / "no-dir")], "--save-dir: "),
    ):
        assert tui_main(argv, {}) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1


async def test_a_connection_error_is_said_whole_in_the_log_once() -> None:
    """The status line has room for the start of an error; the log says it whole, once per
    new error, not once per attempt."""
    port = free_port()
    app = BbbApp(TuiSettings(url=f"ws://127.0.0.1:{port}"))
    async with app.run_test(size=(60, 15)):
        await wait_for(lambda: app.status.attempt >= 3, 15, what="three attempts")
        await wait_for(lambda: "cannot connect" in log_text(app), what="the error in the log")
        said = [line for line in log_text(app).splitlines() if "cannot connect" in line]
        assert len(said) == 1 and f"127.0.0.1:{port}" in said[0]
        assert (app.status.error or "")[:20] in said[0]
