"""bbb-tui in a real pseudo-terminal: nothing a publisher or a bridge sends acts on the terminal.

The terminal is an emulator that answers queries the way xterm does (tests/terminal.py),
so text that reached it raw would not only show: its answer would come back as keys.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from bridge.core.protocol import GREETING, EventType, encode_control, encode_session
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import Publisher, publish_count
from tests.terminal import Terminal, bbb_tui

pytestmark = pytest.mark.timeout(90)

#: One of each way text has acted on a terminal: queries answered as keys (DA1, DA2,
#: window size, cursor position, in 7-bit and C1 form), title, clipboard, DCS/APC,
#: leaving the alternate screen, mouse off, cursor moves, bidi override, forged lines,
#: and widths: wide, emoji, zero-width, long ids sharing a prefix.
HOSTILE = [
    "orders\x1b[c",
    "q\x1b[>c",
    "q\x1b[18t",
    "q\x1b[6n",
    "q\x9b6n",
    "\x1b]0;pwned\x07",
    "\x1b]2;pwned\x1b\\",
    "\x1b]52;c;cm0gLXJmIH4=\x07",
    "\x1bP+q544e\x1b\\dcs",
    "\x1b_apc\x1b\\",
    "\x1b[?1049l\x1b[?1000lleft",
    "\x1b[5;5Hmoved\x1b[2K",
    "\u202eevil.exe",
    "line\u2028\x85connection lost ... reconnecting",
    "\u961f\u5217" * 30,
    "\U0001f680" * 30,
    "zw\u200b\u200d\ufeffj",
    "import-2026-12-01-batch-000000000001",
    "import-2026-12-01-batch-000000000002",
    # Widths that Rich and terminals disagree on: a spacing vowel sign, skin tones, a symbol.
    "\u0915\u093e\u092e-" * 12,
    "deploy-" + "\U0001f44d\U0001f3fd" * 12,
    "\u2630" * 30,
]
TYPES = (
    EventType.QUEUE_REFRESH,  # queues/table, queues/stats data
    EventType.JOB_REFRESH,  # jobs/table data (latest ids)
    EventType.SINGLE_JOB_REFRESH,  # jobs/single <id> key
    EventType.JOB_LOG_REFRESH,  # jobs/logs <id> key
)


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        await terminal.close()


async def start(terminals: list[Terminal], *args: str) -> Terminal:
    terminal = Terminal(bbb_tui(*args)).start()
    terminals.append(terminal)
    return terminal


def assert_terminal_untouched(terminal: Terminal) -> None:
    assert terminal.queries == [], f"the app sent terminal queries: {terminal.queries}"
    assert terminal.clipboard_writes == []
    assert terminal.titles == []
    assert terminal.string_controls == []
    assert not terminal.left_alternate_screen and not terminal.mouse_off
    assert terminal.misaligned_rows() == []


async def test_hostile_ids_and_queue_names_never_reach_the_terminal(
    bridge: Bridge,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    publish: Publisher,
    prefix: str,
    terminals: list[Terminal],
) -> None:
    """Hostile ids on every channel: no query, title or clipboard write, borders in place,
    and the TUI publishes nothing (Redis counts only the test's own PUBLISHes)."""
    terminal = await start(
        terminals,
        "--url", f"ws://127.0.0.1:{bridge.port}",
        "--redis-url", redis_server.url,
        "--prefix", prefix,
        "--fetch-latency", "0.01",
    )  # fmt: skip
    await terminal.wait_for_text("connected")
    await terminal.wait_for_text("session")
    before = await publish_count(redis_client)
    sent = 0
    for payload in HOSTILE:
        for event_type in TYPES:
            await publish(event_type, payload.encode())
            sent += 1
    await publish(EventType.SINGLE_JOB_REFRESH, "sentinel-one")
    await terminal.wait_for_text("sentinel-one")
    # Anything the terminal typed back has been read by now; a publish it caused would
    # land before this second round trip completes.
    await publish(EventType.SINGLE_JOB_REFRESH, "sentinel-two")
    await terminal.wait_for_text("sentinel-two")
    assert await publish_count(redis_client) - before == sent + 2
    assert_terminal_untouched(terminal)
    assert "orders\\x1b[c" in terminal.text  # shown, as a visible escape
    assert "\u2026" in terminal.text  # long ids are cut visibly
    terminal.type("q")
    await terminal.wait_for(lambda: terminal.process.poll() is not None, "quit", 10)  # type: ignore[union-attr]


HOSTILE_TEXT = "\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[c\x1b[>c\x9b6n\u202e"


async def hostile_bridge() -> tuple[Server, int]:
    """A 'bridge' that sends hostile control text, closes with a hostile reason, then
    refuses every later connection with a hostile 401 body."""
    connections = 0

    def refuse_after_first(connection: ServerConnection, request: Request) -> Response | None:
        nonlocal connections
        connections += 1
        if connections == 1:
            return None
        body = f"bad token {HOSTILE_TEXT}\n".encode()
        headers = Headers({"Content-Length": str(len(body)), "Content-Type": "text/plain"})
        return Response(401, "Unauthorized", headers, body)

    async def handler(connection: ServerConnection) -> None:
        await connection.send(GREETING.decode())
        await connection.send(encode_session(f"epoch{HOSTILE_TEXT}", 1).decode())
        await connection.send(encode_control(f"type{HOSTILE_TEXT}", queueName=HOSTILE_TEXT))
        await connection.send(encode_control("resync", reason=HOSTILE_TEXT).decode())
        await connection.send(f"not json {HOSTILE_TEXT}")
        await connection.send('{"type":"job-refresh","data":{"jobId":"\\u001b[c"}}')
        await connection.close(4000, "bye\x1b[c\x1b]0;pwned\x07")

    server = await serve(handler, "127.0.0.1", 0, process_request=refuse_after_first)
    return server, server.sockets[0].getsockname()[1]


async def hostile_redis() -> tuple[asyncio.AbstractServer, int]:
    """A 'Redis' that answers every command with an error full of escape sequences."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            writer.write(f"-ERR {HOSTILE_TEXT}\r\n".encode())
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_hostile_bridge_and_redis_never_reach_the_terminal(
    terminals: list[Terminal],
) -> None:
    """Hostile close reasons, refusal bodies, control messages and Redis errors are shown
    escaped in the status line, the log and a notification, and never act on the terminal."""
    bridge_server, bridge_port = await hostile_bridge()
    redis_server, redis_port = await hostile_redis()
    try:
        terminal = await start(
            terminals,
            "--url", f"ws://127.0.0.1:{bridge_port}",
            "--redis-url", f"redis://127.0.0.1:{redis_port}",
        )  # fmt: skip
        await terminal.wait_for_text("refused: HTTP 401", timeout=20)
        await terminal.wait_for_text("closed by the bridge (4000")
        terminal.type("1")  # publish: the 'Redis' answers with its hostile error
        await terminal.wait_for_text("refused it")
        assert_terminal_untouched(terminal)
        assert "\\x1b]0;pwned" in terminal.text
    finally:
        bridge_server.close()
        redis_server.close()


def events_shown(terminal: Terminal) -> int:
    match = re.search(r"([\d,]+) events", terminal.lines[1])
    return int(match.group(1).replace(",", "")) if match else 0


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
async def test_the_demo_at_full_speed_quits_at_once_and_restores_the_terminal(
    how: str, redis_server: RedisServer, prefix: str, terminals: list[Terminal]
) -> None:
    """The demo publishing as fast as it may: q (or SIGTERM from outside) ends it promptly,
    with exit 0 and the terminal back from the alternate screen."""
    terminal = await start(
        terminals,
        "--demo",
        "--data",
        "simulated",
        "--rate",
        "20000",
        "--redis-url",
        redis_server.url,
        "--prefix",
        prefix,
    )
    await terminal.wait_for_text("connected", timeout=30)
    await terminal.wait_for(lambda: events_shown(terminal) > 5000, "thousands of events", 20)
    assert terminal.process is not None
    if how == "q":
        terminal.type("q")
    else:
        terminal.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(asyncio.to_thread(terminal.process.wait), 5)
    assert code == 0
    await terminal.wait_for(lambda: terminal.left_alternate_screen, "the screen restored", 5)


async def test_the_bullmq_demo_shows_real_queues_and_quits_cleanly(
    redis_server: RedisServer, terminals: list[Terminal]
) -> None:
    """`bbb-tui --demo` as a person runs it: real BullMQ queues fill the queues view, and q
    stops the workers and the bridge and exits 0 with the terminal restored."""
    bull = f"demo{uuid.uuid4().hex[:8]}"  # its queues stay out of other tests' way
    terminal = await start(
        terminals, "--demo", "--redis-url", redis_server.url, "--bullmq-prefix", bull
    )
    await terminal.wait_for_text("BullMQ data", timeout=30)
    for queue in ("emails", "images", "reports", "webhooks"):
        await terminal.wait_for_text(queue, timeout=20)
    await terminal.wait_for(lambda: events_shown(terminal) > 50, "stream events", 20)
    assert terminal.process is not None
    terminal.type("q")
    code = await asyncio.wait_for(asyncio.to_thread(terminal.process.wait), 8)
    assert code == 0
    await terminal.wait_for(lambda: terminal.left_alternate_screen, "the screen restored", 5)


async def test_the_tail_command_writes_nothing_raw_either(terminals: list[Terminal]) -> None:
    """`bbb-bridge tail` against the hostile bridge: its status lines (a close reason, a
    refusal body) reach the terminal escaped, like everything else."""
    bridge_server, bridge_port = await hostile_bridge()
    try:
        terminal = Terminal(
            [sys.executable, "-m", "bridge", "tail", "--url", f"ws://127.0.0.1:{bridge_port}"]
        ).start()
        terminals.append(terminal)
        await terminal.wait_for(
            lambda: terminal.process is not None and terminal.process.poll() is not None,
            "tail to give up on the 401",
            30,
        )
        assert "refused the connection: HTTP 401" in terminal.text
        assert_terminal_untouched(terminal)
        assert "\\x1b]0;pwned" in terminal.text
    finally:
        bridge_server.close()


@pytest.mark.soak
async def test_a_closed_terminal_never_leaves_the_tui_running(
    redis_server: RedisServer, prefix: str, terminals: list[Terminal]
) -> None:
    """The terminal goes away (SIGHUP) while the demo floods the screen: the TUI exits. (It
    could hang for good in Textual's writer, restoring a terminal that is gone, now and
    then: twice here.)"""
    for _ in range(2):
        terminal = await start(
            terminals, "--demo", "--rate", "20000",
            "--redis-url", redis_server.url, "--prefix", prefix,
        )  # fmt: skip
        await terminal.wait_for_text("connected", timeout=30)

        def flooded(shown: Terminal = terminal) -> bool:
            return events_shown(shown) > 2000

        await terminal.wait_for(flooded, "thousands of events", 20)
        assert terminal.process is not None
        terminal.stop_reading()  # as a closing terminal does first: the app's writes block
        await asyncio.sleep(1)
        terminal.hang_up()
        await asyncio.wait_for(asyncio.to_thread(terminal.process.wait), 10)
