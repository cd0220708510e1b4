"""bbb-bridge as a user runs it: a child process, its log lines, signals and exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bridge.core.protocol import EventType
from bridge.serving.auth import issue_token
from bridge.serving.server import Bridge
from bridge.tools.embedded import LOCAL_REDIS_URL, RedisServer, free_port, url_answers
from tests.helpers import (
    GREETING,
    BridgeProcess,
    Publisher,
    expect_greeting,
    http_get,
    recv_event,
    run,
    run_bridge,
    serving_bridge,
    start_bridge,
    wait_for,
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0_quickly(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str, sig: signal.Signals
) -> None:
    """SIGTERM or SIGINT: every client is closed with 1001 and the process exits 0 within 2 s."""
    bridge, port = await serving_bridge(processes, redis_server, prefix)
    clients = [await connect(f"ws://127.0.0.1:{port}") for _ in range(3)]
    for ws in clients:
        await expect_greeting(ws)
    await bridge.wait_line(r"\(3 connected\)")
    started = time.monotonic()
    bridge.send_signal(sig)
    assert await bridge.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    for ws in clients:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
        assert ws.close_code == 1001
    assert "Traceback" not in bridge.output


async def test_port_in_use_is_one_clear_line(redis_server: RedisServer) -> None:
    """A port already taken gives one error line naming it, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(
            run, "--host", "127.0.0.1", "--port", str(port), "--redis-url", redis_server.url
        )
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--redis-url", "http://localhost"], "invalid Redis URL"),
        (["--port", "70000"], "--port: must be a whole number from 0 to 65,535, got '70000'"),
        (["--port", "abc"], "--port: must be a whole number"),
    ],
)
def test_bad_settings_are_one_clear_line(args: list[str], message: str) -> None:
    """Wrong flags give one error line and exit 2, no traceback."""
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


async def test_unreachable_redis_keeps_serving_and_says_so(processes: list[BridgeProcess]) -> None:
    """An unreachable Redis at start: one warning line, WebSocket side up, /healthz 503."""
    dead = free_port()
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--redis-url", f"redis://127.0.0.1:{dead}"
    )
    port = await bridge.listening_port()
    await bridge.wait_line(rf"Redis at redis://127.0.0.1:{dead} unavailable")
    status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
    assert (status, body["redis"]) == (503, "disconnected")
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await expect_greeting(ws)
    assert "Traceback" not in bridge.output


async def test_simulate_publishes_the_four_test_events_through_the_bridge(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> None:
    """`simulate` publishes the original's four test events; a client receives all four."""
    _, port = await serving_bridge(processes, redis_server, prefix)
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await expect_greeting(ws)
        result = await asyncio.to_thread(
            run, "simulate", "--redis-url", redis_server.url, "--prefix", prefix
        )
        assert result.returncode == 0, result.stderr
        assert f"PUBLISH {prefix}job-refresh test-job-123 -> 1 subscriber(s)" in result.stdout
        received = [await recv_event(ws) for _ in range(4)]
    assert received == [
        {"type": "job-refresh", "data": {"jobId": "test-job-123"}},
        {"type": "queue-refresh", "data": {"queueName": "test-queue"}},
        {"type": "job-scheduler-refresh", "data": {"schedulerKey": "test-scheduler-key"}},
        {"type": "log-refresh", "data": {"jobId": "test-job-456"}},
    ]


async def test_simulate_load_and_tail_print_every_event(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> None:
    """`simulate --burst` publishes real-publisher bursts; `tail` prints each as a JSON line."""
    _, port = await serving_bridge(processes, redis_server, prefix)
    # 2 bursts of (1 job-refresh + 5 single-job-refresh) = 12 events, after greeting and session.
    tail = await run_bridge(processes, "tail", "--url", f"ws://127.0.0.1:{port}", "--count", "14")
    await tail.wait_line("Connected to")
    result = await asyncio.to_thread(
        run,
        "simulate",
        "--redis-url",
        redis_server.url,
        "--prefix",
        prefix,
        "--count",
        "2",
        "--burst",
        "5",
        "--rate",
        "100",
    )
    assert result.returncode == 0, result.stderr
    assert "published 12 events" in result.stdout
    assert await tail.wait(timeout=10) == 0
    messages = [json.loads(line) for line in tail.stdout_lines]
    assert messages[0] == GREETING
    assert messages[1]["type"] == "session"
    events = messages[2:]
    assert [m["type"] for m in events[:6]] == ["job-refresh"] + ["single-job-refresh"] * 5
    assert events[0]["data"] == {"jobId": "1"}
    assert [m["data"]["jobId"] for m in events[7:12]] == [f"sim-job-{i}" for i in range(6, 11)]
    assert [m["seq"] for m in events] == list(range(1, 13))


def test_tail_rejects_a_wrong_url() -> None:
    """`tail` with a URL that is not ws:// says so in one line."""
    result = run("tail", "--url", "http://localhost:1")
    assert result.returncode == 2
    assert "--url: must be a ws:// or wss:// URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["simulate"], ["tail"]])
def test_help_everywhere(command: list[str]) -> None:
    """Every command has --help."""
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: bbb-bridge" in result.stdout


@pytest.mark.skipif(url_answers(LOCAL_REDIS_URL), reason="a Redis answers on :6379 here")
async def test_embedded_redis_starts_and_is_stopped_on_exit(processes: list[BridgeProcess]) -> None:
    """--embedded-redis with no Redis around starts a private one; SIGTERM leaves none behind."""
    bridge = await run_bridge(processes, "--host", "127.0.0.1", "--port", "0", "--embedded-redis")
    redis_port = int((await bridge.wait_line(r"private redis-server on port (\d+)")).group(1))
    await bridge.wait_line("Subscribed to Redis channels")
    assert url_answers(f"redis://127.0.0.1:{redis_port}")
    bridge.send_signal(signal.SIGTERM)
    assert await bridge.wait(timeout=10) == 0
    await wait_for(
        lambda: not url_answers(f"redis://127.0.0.1:{redis_port}"),
        timeout=5,
        what="the private redis-server to stop",
    )


def test_several_redis_urls_from_flags_or_environment() -> None:
    """Cluster nodes: --redis-url repeated, or a comma-separated REDIS_URL; each is checked."""
    from bridge.cli import parse
    from bridge.config import ConfigError, settings_from

    def settings(argv: list[str], env: dict[str, str]) -> str:
        return settings_from(parse(["serve", *argv], env)).redis_url

    both = "redis://a:1,redis://b:2"
    assert settings(["--redis-url", "redis://a:1", "--redis-url", "redis://b:2"], {}) == both
    assert settings([], {"REDIS_URL": "redis://a:1, redis://b:2"}) == both
    assert settings(["--redis-url", "redis://c:3"], {"REDIS_URL": both}) == "redis://c:3"
    with pytest.raises(ConfigError, match="scheme"):
        settings(["--redis-url", "redis://a:1", "--redis-url", "http://b"], {})


async def test_tail_resumes_after_a_drop(
    processes: list[BridgeProcess], bridge: Bridge, publish: Publisher
) -> None:
    """`tail` reconnects with since/epoch: every event once, in order, across the drop."""
    tail = await run_bridge(
        processes, "tail", "--url", f"ws://127.0.0.1:{bridge.port}", "--count", "9"
    )
    await tail.wait_line("Connected to")
    await wait_for(lambda: len(bridge.hub) == 1, what="tail connected")
    for i in range(2):
        await publish(EventType.JOB_REFRESH, f"before-{i}")
    await wait_for(lambda: len(tail.stdout_lines) == 4, what="greeting, session, 2 events")
    for connection in list(bridge.hub):
        connection.abort()  # the network drops
    for i in range(3):
        await publish(EventType.JOB_REFRESH, f"after-{i}")
    await tail.wait_line(r"Connected to .* \(from seq 2\)")
    assert await tail.wait(timeout=10) == 0  # 9 messages: twice greeting + session, 5 events
    events = [json.loads(line) for line in tail.stdout_lines]
    ids = [m["data"]["jobId"] for m in events if "jobId" in m["data"]]
    assert ids == ["before-0", "before-1", "after-0", "after-1", "after-2"]


async def test_tail_with_batches_resumes_after_the_last_batch(
    processes: list[BridgeProcess], bridge: Bridge, publish: Publisher
) -> None:
    """`tail` on ?batch=: after a drop it resumes after the last event of the last batch, so
    nothing is printed twice."""
    url = f"ws://127.0.0.1:{bridge.port}/?batch=20"
    tail = await run_bridge(processes, "tail", "--url", url)
    await tail.wait_line("Connected to")
    await wait_for(lambda: len(bridge.hub) == 1, what="tail connected")
    for i in range(3):
        await publish(EventType.JOB_REFRESH, f"before-{i}")
    await wait_for(lambda: "before-2" in "".join(tail.stdout_lines), what="the first batch")
    for connection in list(bridge.hub):
        connection.abort()  # the network drops
    await publish(EventType.JOB_REFRESH, "after-0")
    await tail.wait_line(r"Connected to .* \(from seq 3\)")
    await wait_for(lambda: "after-0" in "".join(tail.stdout_lines), what="the replayed event")
    printed = "".join(tail.stdout_lines)
    assert [printed.count(f"before-{i}") for i in range(3)] == [1, 1, 1]


async def test_tail_count_leaves_at_once_under_a_flood(
    processes: list[BridgeProcess],
    bridge: Bridge,
    publish: Publisher,
    redis_server: RedisServer,
    prefix: str,
) -> None:
    """`tail --count 3` exits promptly even while a burst keeps arriving (it waited ~10 s for
    the close handshake behind the burst)."""
    flood = await run_bridge(
        processes, "simulate", "--redis-url", redis_server.url, "--prefix", prefix,
        "--count", "2000000", "--rate", "0",
    )  # fmt: skip
    await wait_for(lambda: bridge.journal.seq > 10_000, 20, what="the flood under way")
    tail = await run_bridge(
        processes, "tail", "--url", f"ws://127.0.0.1:{bridge.port}", "--count", "3"
    )
    assert await tail.wait(timeout=5) == 0
    assert len(tail.stdout_lines) == 3
    await flood.close()


async def test_tail_reads_its_token_file_before_each_attempt(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """`tail --token-file`: a missing file, or one that is not text, is retried (and said); a
    file with a good token connects."""
    secret = "tail-test-secret-0123456789-abcdefghijk"
    bridge = await start_bridge(redis_server.url, prefix, auth_secret=secret)
    token_file = tmp_path / "token"
    try:
        tail = await run_bridge(
            processes, "tail", "--url", f"ws://127.0.0.1:{bridge.port}", "--count", "2",
            "--token-file", str(token_file),
        )  # fmt: skip
        await tail.wait_line("cannot read the token file")
        token_file.write_bytes(b"\xff\xfe")  # rotated into garbage: said, not a traceback
        await tail.wait_line("is not text", timeout=20)
        token_file.write_text(issue_token(secret) + "\n")
        assert await tail.wait(timeout=20) == 0
        assert json.loads(tail.stdout_lines[0]) == GREETING
    finally:
        await bridge.stop()
