"""A client that stops reading costs bounded memory and delays nobody (issue 6)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from bench.fanout import Clients, start_clients
from bridge.core.protocol import EventType
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from bridge.wsio.frames import FrameSplitter
from tests.helpers import (
    SUBSCRIBE_TIMEOUT,
    BridgeProcess,
    Publisher,
    rss_bytes,
    run_bridge,
    start_bridge,
    wait_for,
)

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
# Enough bytes to fill the kernel's socket buffers too (they grow to a few MB) and
# the bridge's bound; the bound is far above one burst read from Redis (256 KiB).
EVENTS = 12_000
BOUND = 2 * 1024 * 1024
PAD = "x" * 1000


class Lazy(asyncio.Protocol):
    """A raw client with a tiny receive window that reads only when told to."""

    def __init__(self) -> None:
        self.data = b""
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def messages(self) -> list[bytes]:
        body = self.data[self.data.index(b"\r\n\r\n") + 4 :]
        frames, _ = FrameSplitter(1 << 20).split(body)
        return [payload for fast, payload in frames if fast]


async def lazy_client(port: int, *, pause: bool = True) -> Lazy:
    sock = socket.socket()
    if pause:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    _, client = await asyncio.get_running_loop().create_connection(Lazy, sock=sock)
    await wait_for(lambda: b'"connected"' in client.data, what="the greeting")
    assert client.transport is not None
    if pause:
        client.transport.pause_reading()
    return client


async def flood(publish: Publisher, count: int) -> None:
    pipe = publish.client.pipeline(transaction=False)
    for i in range(count):
        pipe.publish(publish.channel(EventType.SINGLE_JOB_REFRESH), f"job-{i:06d}-{PAD}")
    await pipe.execute()


@pytest.fixture
async def tight_bridge(redis_server: RedisServer, prefix: str) -> Bridge:
    return await start_bridge(
        redis_server.url, prefix, max_client_buffer=BOUND, slow_client_timeout=1.5
    )


@pytest.mark.soak
async def test_a_stuck_client_is_closed_and_the_others_lose_nothing(
    tight_bridge: Bridge, publish: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that never reads is cut off from events, then closed (1013); others get all."""
    bridge = tight_bridge
    caplog.set_level(logging.INFO, logger="bridge")
    stuck = Lazy()
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        stuck = await lazy_client(bridge.port)
        healthy = await lazy_client(bridge.port, pause=False)
        await flood(publish, EVENTS)
        # The greeting and the session, then every event, numbered from 1.
        await wait_for(lambda: len(healthy.messages()) == EVENTS + 2, 20, what="every event")
        assert healthy.messages()[2:] == [
            b'{"type":"single-job-refresh","data":{"jobId":"job-%06d-%s"},"seq":%d}'
            % (i, PAD.encode(), i + 1)
            for i in range(EVENTS)
        ]
        await wait_for(lambda: "is not reading" in caplog.text, what="the lag noticed")
        await wait_for(lambda: len(bridge.hub) == 1, 10, what="the stuck client closed")
        assert "closing (1013)" in caplog.text
        assert caplog.text.count("is not reading") == 1  # the healthy client never lagged
        assert stuck.transport is not None
        stuck.transport.resume_reading()  # only a reading socket notices it was closed
        await asyncio.wait_for(stuck.closed.wait(), 5)
        if healthy.transport is not None:
            healthy.transport.abort()
    finally:
        await bridge.stop()
        if stuck.transport is not None:
            stuck.transport.abort()


async def test_a_client_that_catches_up_gets_a_resync(
    redis_server: RedisServer, prefix: str, publish: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that falls behind misses events, then receives one resync, then live events."""
    bridge = await start_bridge(
        redis_server.url, prefix, max_client_buffer=BOUND, slow_client_timeout=30
    )
    caplog.set_level(logging.INFO, logger="bridge")
    lazy = Lazy()
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        lazy = await lazy_client(bridge.port)
        await flood(publish, EVENTS)
        await wait_for(lambda: "is not reading" in caplog.text, what="the lag noticed")
        assert lazy.transport is not None
        lazy.transport.resume_reading()
        await wait_for(lambda: "caught up" in caplog.text, 10, what="the client to catch up")
        await publish(EventType.JOB_REFRESH, "after")
        await wait_for(lambda: b'"after"' in lazy.data, what="live events again")
        messages = lazy.messages()
        resyncs = [m for m in messages if b'"type":"resync"' in m]
        assert resyncs == [b'{"type":"resync","data":{"reason":"slow-client"}}']
        assert messages.index(resyncs[0]) < len(messages) - 1  # live events follow it
        assert len(messages) < EVENTS  # the backlog was cut, not buffered
        assert len(bridge.hub) == 1
    finally:
        await bridge.stop()
        if lazy.transport is not None:
            lazy.transport.abort()


# -- 200 clients, one of them stuck: issue 6's latency test ---------------------------

STUCK_RATE = 1000  # events per second
STUCK_SECONDS = 30.0
BASELINE_SECONDS = 10.0
P99_FLOOR_MS = 15.0  # below this, a doubled p99 is scheduling noise on a shared machine
SMALL_PAD = "x" * 200


async def steady_stream(publish: Publisher, seconds: float) -> int:
    """PUBLISH RATE events/s, each carrying its publish time for the probe; return the count."""
    loop = asyncio.get_running_loop()
    channel = publish.channel(EventType.SINGLE_JOB_REFRESH)
    per_tick, sent = STUCK_RATE // 100, 0
    next_at = started = loop.time()
    while loop.time() - started < seconds:
        pipe = publish.client.pipeline(transaction=False)
        for _ in range(per_tick):
            pipe.publish(channel, f"{time.monotonic_ns():020d}-{SMALL_PAD}")
        await pipe.execute()
        sent += per_tick
        next_at += 0.01
        await asyncio.sleep(max(next_at - loop.time(), 0))
    return sent


async def all_delivered(clients: Clients, expected: int) -> dict[str, Any]:
    """The clients' report once each has ``expected`` events (or 10 s have passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        report = await clients.report()
        if report["min"] >= expected or loop.time() > deadline:
            return report
        await asyncio.sleep(0.1)


@pytest.mark.soak
@pytest.mark.timeout(180)
async def test_one_stuck_client_among_200_costs_the_others_nothing(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """200 clients at 1,000 events/s, then one more that never reads, for 30 s: the 200
    lose nothing, their p99 stays within 2x of the run without it, memory stays bounded."""
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0",
        "--redis-url", redis_server.url, "--prefix", prefix,
        "--max-client-buffer", str(1024 * 1024), "--slow-client-timeout", "15",
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line("Subscribed to Redis channels")
    assert bridge.process is not None
    clients = await start_clients("bridge", port, 199)  # and a probe: 200 connections
    stuck = Lazy()
    try:
        sent = await steady_stream(publish, BASELINE_SECONDS)
        baseline = await all_delivered(clients, sent)
        assert (baseline["min"], baseline["max"]) == (sent, sent)
        await clients.command("reset")

        stuck = await lazy_client(port)
        rss_before = rss_bytes(bridge.process.pid)
        peak = rss_before

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_bytes(bridge.process.pid))  # type: ignore[union-attr]
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        try:
            sent = await steady_stream(publish, STUCK_SECONDS)
        finally:
            sampler.cancel()
        loaded = await all_delivered(clients, sent)
        assert (loaded["min"], loaded["max"]) == (sent, sent)  # nobody lost anything
        assert loaded["p99"] <= 2 * max(baseline["p99"], P99_FLOOR_MS), (baseline, loaded)
        # The stuck client cost its bounded buffer (1 MiB here), not 30 s of events.
        assert peak - rss_before < 16 * 1024 * 1024
        assert "is not reading" in bridge.output and "closing (1013)" in bridge.output
        print(f"p99 without/with the stuck client: {baseline['p99']:.1f} / {loaded['p99']:.1f} ms")
    finally:
        await clients.close()
        if stuck.transport is not None:
            stuck.transport.abort()
