"""Running it in production: /metrics, JSON logs, several bridges side by side (issue 7)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bridge.core.protocol import EventType
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    ROOT,
    BridgeProcess,
    Publisher,
    expect_greeting,
    health_status,
    http_get,
    recv_json,
    run_bridge,
    wait_for,
)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics and index every sample by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_what_happened(bridge: Bridge, publish: Publisher) -> None:
    """/metrics: connections, events in by type, messages out, resyncs, refusals, latency."""
    url = f"ws://127.0.0.1:{bridge.port}"
    async with connect(url) as first, connect(url) as second:
        await expect_greeting(first)
        await expect_greeting(second)
        await publish(EventType.JOB_REFRESH, "1")
        await publish(EventType.QUEUE_REFRESH, "emails")
        await publish("no-such-type", "x")  # dropped
        for ws in (first, second):
            await recv_json(ws)
            await recv_json(ws)
        async with connect(f"{url}/?since=0&epoch=another-run") as late:
            await expect_greeting(late)
            assert (await recv_json(late))["type"] == "resync"
        metrics = await asyncio.to_thread(scrape, bridge.port)
    assert metrics[("bbb_bridge_connections", ())] == 2
    assert metrics[("bbb_bridge_connections_opened_total", ())] == 3
    assert metrics[("bbb_bridge_events_in_total", (("type", "job-refresh"),))] == 1
    assert metrics[("bbb_bridge_events_in_total", (("type", "queue-refresh"),))] == 1
    assert metrics[("bbb_bridge_events_in_total", (("type", "log-refresh"),))] == 0
    assert metrics[("bbb_bridge_messages_out_total", ())] == 4  # 2 events x 2 clients
    assert metrics[("bbb_bridge_events_out_total", (("type", "job-refresh"),))] == 2
    assert metrics[("bbb_bridge_events_out_total", (("type", "log-refresh"),))] == 0
    assert metrics[("bbb_bridge_dropped_total", (("reason", "unknown channel"),))] == 1
    assert metrics[("bbb_bridge_resyncs_total", (("reason", "epoch-changed"),))] == 1
    assert metrics[("bbb_bridge_redis_up", ())] == 1
    assert metrics[("bbb_bridge_last_seq", ())] == 2
    assert metrics[("bbb_bridge_broadcast_seconds_count", ())] == 2  # one per batch
    assert metrics[("process_resident_memory_bytes", ())] > 0


async def test_json_logs_are_one_object_per_line(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> None:
    """--log-format json: every stderr line is a JSON object with time (UTC), level, logger,
    message."""
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_server.url,
        "--prefix", prefix, "--log-format", "json",
    )  # fmt: skip
    await bridge.wait_line("Subscribed to Redis channels")
    entries = [json.loads(line) for line in bridge.lines]
    assert entries[0]["message"].startswith("WebSocket server listening on port ")
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert entries[0]["time"].endswith("+00:00") and entries[0]["level"] == "INFO"


async def test_two_bridges_on_one_redis_each_serve_their_own_clients(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """Bridges are stateless peers: clients spread over two each get every event."""
    ports = []
    for _ in range(2):
        bridge = await run_bridge(
            processes, "--host", "127.0.0.1", "--port", "0",
            "--redis-url", redis_server.url, "--prefix", prefix,
        )  # fmt: skip
        ports.append(await bridge.listening_port())
        await bridge.wait_line("Subscribed to Redis channels")
    clients = [await connect(f"ws://127.0.0.1:{ports[i % 2]}") for i in range(6)]
    try:
        for ws in clients:
            await expect_greeting(ws)
        for i in range(20):
            assert await publish(EventType.SINGLE_JOB_REFRESH, f"job-{i}") == 2  # both bridges
        for ws in clients:
            got = [(await recv_json(ws))["data"]["jobId"] for _ in range(20)]
            assert got == [f"job-{i}" for i in range(20)]
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_workers_share_one_port_and_stop_together(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """--workers 2: one port, connections spread over both, every client gets every event;
    SIGTERM closes them all with 1001 and exits 0."""
    parent = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        "--redis-url", redis_server.url, "--prefix", prefix,
    )  # fmt: skip
    port = int((await parent.wait_line(r"WebSocket port (\d+): starting 2 workers")).group(1))
    await parent.wait_line(r"\[w1\] Subscribed to Redis")
    await parent.wait_line(r"\[w2\] Subscribed to Redis")
    clients = [await connect(f"ws://127.0.0.1:{port}") for _ in range(20)]
    for ws in clients:
        await expect_greeting(ws)
    assert await publish(EventType.JOB_REFRESH, "for-all") == 2  # one subscription per worker
    for ws in clients:
        assert (await recv_json(ws))["data"] == {"jobId": "for-all"}
    served_by = {
        m.group(1) for line in parent.lines if (m := re.search(r"\[(w\d)\] Client connected", line))
    }
    assert served_by == {"w1", "w2"}  # 20 connections on one worker: odds of 1 in 500,000
    parent.send_signal(signal.SIGTERM)
    assert await parent.wait(timeout=10) == 0
    for ws in clients:
        await ws.wait_closed()
        assert ws.close_code == 1001


@pytest.mark.soak
async def test_a_worker_that_dies_is_restarted(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> None:
    """A worker killed after start-up is restarted by the parent, which keeps running; so is
    one killed again right after its restart (a signal is a crash, not a bad configuration),
    and the other worker serves throughout."""
    parent = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        "--redis-url", redis_server.url, "--prefix", prefix,
    )  # fmt: skip
    pids = (await parent.wait_line(r"Started 2 workers \(pids (\d+), (\d+)\)")).groups()
    port = int((await parent.wait_line(r"\[w1\] .*listening on port (\d+)")).group(1))
    os.kill(int(pids[0]), signal.SIGKILL)
    await parent.wait_line(r"Worker 1 exited with code -9; restarting it")
    pid = int((await parent.wait_line(r"Worker 1 restarted \(pid (\d+)\)", timeout=40)).group(1))
    os.kill(pid, signal.SIGKILL)  # soon after its restart
    await wait_for(
        lambda: sum("Worker 1 exited with code -9" in line for line in parent.lines) == 2,
        what="the second death seen",
    )

    def back_again() -> bool:
        restarts = [n for n, line in enumerate(parent.lines) if "Worker 1 restarted" in line]
        later = parent.lines[restarts[-1] :] if len(restarts) == 2 else []
        return any("[w1] Subscribed to Redis" in line for line in later)

    await wait_for(back_again, 30, what="worker 1 back again")
    assert parent.process is not None and parent.process.returncode is None
    assert "stopping" not in parent.output
    assert await health_status(port) == 200


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads them (comments skipped)."""
    env = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return env


def test_the_systemd_unit_runs_serve_with_the_example_environment() -> None:
    """The unit runs `serve` with the env file, restarts on failure but not on a configuration
    error."""
    unit = {}
    with open(os.path.join(ROOT, "deploy", "bbb-bridge.service")) as lines:
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and not line.startswith("#"):
                unit[key] = value
    assert unit["ExecStart"].endswith("/bbb-bridge serve")
    assert unit["EnvironmentFile"] == "/etc/bbb-bridge.env"
    assert unit["Restart"] == "on-failure"
    assert unit["RestartPreventExitStatus"] == "2"  # a configuration error: do not loop
    assert unit["KillSignal"] == "SIGTERM"


async def test_the_example_environment_file_starts_a_ready_bridge(
    processes: list[BridgeProcess], redis_server: RedisServer
) -> None:
    """The deploy/ environment file, pointed at the test Redis: the bridge comes up and
    /healthz says it is ready."""
    env = read_env_file(os.path.join(ROOT, "deploy", "bbb-bridge.env"))
    env.update(REDIS_PORT=str(redis_server.port), WEBSOCKET_PORT="0", WEBSOCKET_HOST="127.0.0.1")
    bridge = BridgeProcess("serve", env=env)
    processes.append(await bridge.start())
    port = await bridge.listening_port()
    await bridge.wait_line("Subscribed to Redis channels")
    status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
    assert (status, body["status"]) == (200, "ok")


@pytest.mark.soak
async def test_stopping_during_a_restart_wait_is_prompt_and_clean(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> None:
    """SIGTERM to the parent while it waits to restart a dead worker: the other worker's
    client gets 1001 and the parent exits 0 at once (it waited out the delay, then 1)."""
    parent = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        "--redis-url", redis_server.url, "--prefix", prefix,
    )  # fmt: skip
    pids = (await parent.wait_line(r"Started 2 workers \(pids (\d+), (\d+)\)")).groups()
    port = int((await parent.wait_line(r"\[w2\] .*listening on port (\d+)")).group(1))
    await parent.wait_line(r"\[w1\] .*listening on port")
    ws = None
    for _ in range(50):  # the kernel spreads connections: keep one that landed on worker 2
        candidate = await connect(f"ws://127.0.0.1:{port}")
        await expect_greeting(candidate)
        line = await parent.wait_line(r"\[w(\d)\] Client connected")
        parent.lines.clear()
        if line.group(1) == "2":
            ws = candidate
            break
        await candidate.close()
    assert ws is not None
    async with ws:
        for _ in range(4):  # a worker that keeps dying young: the waits grow
            os.kill(int(pids[0]), signal.SIGKILL)
            await parent.wait_line(r"Worker 1 exited with code -9; restarting it")
            pid = (await parent.wait_line(r"Worker 1 restarted \(pid (\d+)\)", 40)).group(1)
            pids = (pid, pids[1])
            parent.lines.clear()
        os.kill(int(pids[0]), signal.SIGKILL)
        await parent.wait_line(r"Worker 1 exited with code -9; restarting it")
        parent.send_signal(signal.SIGTERM)
        assert await parent.wait(timeout=5) == 0
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
