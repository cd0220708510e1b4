"""A client that stops reading costs bounded memory and delays nobody (issue 6, in part)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from bridge.embedded import RedisServer
from bridge.protocol import EventType
from bridge.server import Bridge
from bridge.wsframes import split_frames
from tests.conftest import SUBSCRIBE_TIMEOUT, Publisher, start_bridge
from tests.helpers import wait_for

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
        frames, _ = split_frames(body, 1 << 20)
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
