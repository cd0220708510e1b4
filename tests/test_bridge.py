"""The bridge end to end: real redis-server, real bridge on a real socket, real clients."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.core.protocol import DEFAULT_PREFIX, EventType
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    GREETING,
    SUBSCRIBE_TIMEOUT,
    Publisher,
    expect_greeting,
    health_status,
    http_get,
    recv_event,
    recv_json,
    start_bridge,
    wait_for,
)

# PROTOCOL.md section 2, written out: what a browser receives for each channel.
EXPECTED = {
    "job-refresh": ("jobId", "job-1"),
    "queue-refresh": ("queueName", "emails"),
    "job-scheduler-refresh": ("schedulerKey", "nightly"),
    "log-refresh": ("jobId", "job-2"),
    "single-job-refresh": ("jobId", "run-3"),
    "single-queue-refresh": ("queueName", "payments"),
    "single-job-scheduler-refresh": ("schedulerKey", "hourly"),
    "job-log-refresh": ("jobId", "job-4"),
}


def ws_url(bridge: Bridge) -> str:
    return f"ws://127.0.0.1:{bridge.port}"


async def connected_client(bridge: Bridge) -> ClientConnection:
    """Connect and consume the greeting (asserting it)."""
    ws = await connect(ws_url(bridge))
    await expect_greeting(ws)
    return ws


async def test_greeting_then_session_come_first(bridge: Bridge, publish: Publisher) -> None:
    """A new connection receives the original's greeting, then where the bridge's numbering is."""
    async with connect(ws_url(bridge)) as ws:
        assert await recv_json(ws) == GREETING
        assert await recv_json(ws) == {
            "type": "session",
            "data": {"epoch": bridge.journal.epoch, "seq": 0, "redis": "up"},
        }
        await publish(EventType.JOB_REFRESH, "1")
        assert (await recv_json(ws))["seq"] == 1
    async with connect(ws_url(bridge)) as ws:
        assert await recv_json(ws) == GREETING
        assert (await recv_json(ws))["data"]["seq"] == 1


@pytest.mark.parametrize("type_name", sorted(EXPECTED))
async def test_each_channel_maps_to_its_frame(
    bridge: Bridge, publish: Publisher, type_name: str
) -> None:
    """PUBLISH on each of the eight channels arrives as the documented JSON frame."""
    field, payload = EXPECTED[type_name]
    async with await connected_client(bridge) as ws:
        assert await publish(type_name, payload) == 1
        assert await recv_event(ws) == {"type": type_name, "data": {field: payload}}


async def test_default_prefix_works_with_the_original_publishers(
    redis_server: RedisServer, publish: Publisher
) -> None:
    """With no --prefix, the channels are the original's bbb:ingest:events:*."""
    bridge = await start_bridge(redis_server.url, DEFAULT_PREFIX)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        async with await connected_client(bridge) as ws:
            await publish.client.publish("bbb:ingest:events:job-refresh", "1")
            assert await recv_event(ws) == {"type": "job-refresh", "data": {"jobId": "1"}}
    finally:
        await bridge.stop()


@pytest.mark.soak
async def test_hundred_clients_receive_every_event_in_order(
    bridge: Bridge, publish: Publisher
) -> None:
    """100 clients each receive all of 1,000 events, in publishing order."""
    clients = await asyncio.gather(*(connected_client(bridge) for _ in range(100)))
    count = 1000

    async def receive_all(ws: ClientConnection) -> list[str]:
        return [(await recv_json(ws, timeout=20))["data"]["jobId"] for _ in range(count)]

    receivers = [asyncio.create_task(receive_all(ws)) for ws in clients]
    pipe = publish.client.pipeline(transaction=False)
    for i in range(count):
        pipe.publish(publish.channel(EventType.SINGLE_JOB_REFRESH), f"job-{i}")
    await pipe.execute()
    results = await asyncio.gather(*receivers)
    expected = [f"job-{i}" for i in range(count)]
    assert all(result == expected for result in results)
    await asyncio.gather(*(ws.close() for ws in clients))


async def test_odd_payloads_are_delivered_or_dropped_without_harm(
    bridge: Bridge, publish: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """Non-UTF-8 and empty payloads arrive intact in shape; a 1 MiB one is dropped and logged."""
    async with await connected_client(bridge) as ws:
        await publish(EventType.SINGLE_JOB_REFRESH, b"id-\xff\xfe")
        assert await recv_event(ws) == {
            "type": "single-job-refresh",
            "data": {"jobId": "id-\ufffd\ufffd"},
        }
        await publish(EventType.QUEUE_REFRESH, b"")
        assert await recv_event(ws) == {"type": "queue-refresh", "data": {"queueName": ""}}
        with caplog.at_level(logging.WARNING, logger="bridge.source"):
            await publish(EventType.JOB_REFRESH, b"x" * (1024 * 1024))
            await publish(EventType.JOB_REFRESH, "after")
            # The next frame is the small event: the huge one never reached the client.
            assert await recv_event(ws) == {"type": "job-refresh", "data": {"jobId": "after"}}
        assert "payload too large" in caplog.text
        assert bridge.source.dropped == 1


async def test_a_large_payload_is_delivered_when_the_limit_allows(
    redis_server: RedisServer, publish: Publisher, prefix: str
) -> None:
    """With --max-payload raised, a 1 MiB payload arrives whole."""
    bridge = await start_bridge(redis_server.url, prefix, max_payload=2 * 1024 * 1024)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        async with connect(ws_url(bridge), max_size=4 * 1024 * 1024) as ws:
            await expect_greeting(ws)
            await publish(EventType.JOB_REFRESH, "y" * (1024 * 1024))
            assert (await recv_json(ws))["data"]["jobId"] == "y" * (1024 * 1024)
    finally:
        await bridge.stop()


async def test_unknown_suffix_is_dropped_and_logged_at_most_once_a_second(
    bridge: Bridge, publish: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """Messages on unknown channels under the prefix are dropped; the log is rate-limited."""
    async with await connected_client(bridge) as ws:
        with caplog.at_level(logging.WARNING, logger="bridge.source"):
            for _ in range(50):
                await publish("no-such-type", "x")
            await publish(EventType.JOB_REFRESH, "known")
            assert await recv_event(ws) == {"type": "job-refresh", "data": {"jobId": "known"}}
        warnings = [r for r in caplog.records if "unknown channel" in r.getMessage()]
        assert len(warnings) == 1
        assert "no-such-type" in warnings[0].getMessage()
        assert bridge.source.dropped == 50


async def test_client_frames_are_ignored_and_oversized_ones_close_with_1009(
    bridge: Bridge, publish: Publisher
) -> None:
    """Small client frames are ignored; one above the limit closes that client (1009) only."""
    async with await connected_client(bridge) as chatty, await connected_client(bridge) as other:
        await chatty.send("hello")
        await chatty.send(b"\x00\x01")
        await publish(EventType.JOB_REFRESH, "still-here")
        assert (await recv_json(chatty))["data"]["jobId"] == "still-here"
        assert (await recv_json(other))["data"]["jobId"] == "still-here"

        await chatty.send("x" * (bridge.settings.max_client_frame + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(chatty.recv(), 5)
        assert chatty.close_code == 1009

        await publish(EventType.JOB_REFRESH, "after")
        assert (await recv_json(other))["data"]["jobId"] == "after"


async def test_healthz_reports_redis_and_client_count(bridge: Bridge) -> None:
    """GET /healthz is plain HTTP: 200, redis connected, and the number of clients."""
    async with await connected_client(bridge), await connected_client(bridge):
        status, body = await http_get(f"http://127.0.0.1:{bridge.port}/healthz")
    assert status == 200
    assert body == {"status": "ok", "redis": "connected", "clients": 2}


async def test_closed_clients_are_cleaned_up(bridge: Bridge) -> None:
    """A client that disconnects leaves the registry."""
    ws = await connected_client(bridge)
    assert len(bridge.hub) == 1
    await ws.close()
    await wait_for(lambda: len(bridge.hub) == 0, what="the client to be removed")


async def test_redis_crash_and_restart_under_a_running_bridge(
    own_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis SIGKILLed and restarted: clients stay and are told (redis-down, then a resync),
    /healthz goes 503 then 200, events flow."""
    caplog.set_level(logging.INFO, logger="bridge.source")
    bridge = await start_bridge(own_redis.url, prefix)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        async with await connected_client(bridge) as ws:
            assert await health_status(bridge.port) == 200
            own_redis.kill()

            async def unhealthy() -> bool:
                return await health_status(bridge.port) == 503

            await wait_for(unhealthy, timeout=5, what="/healthz 503")
            own_redis.start()
            await bridge.source.wait_subscribed(10)
            assert await health_status(bridge.port) == 200
            assert "Lost Redis connection" in caplog.text
            assert (
                "s down" in caplog.text
            )  # the subscribed line says it is back, and after how long
            # Clients are told when it goes (they show it), and that events published while
            # the subscription was down are gone.
            assert await recv_json(ws) == {"type": "redis-down", "data": {"down_seconds": 0.0}}
            resync = await recv_json(ws)
            assert resync["type"] == "resync"
            assert resync["data"]["reason"] == "redis-reconnected"
            assert resync["data"]["down_seconds"] >= 0
            await publish_once(own_redis.url, f"{prefix}job-refresh", "after-restart")
            assert await recv_event(ws) == {
                "type": "job-refresh",
                "data": {"jobId": "after-restart"},
            }
    finally:
        await bridge.stop()


async def publish_once(url: str, channel: str, payload: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.publish(channel, payload)
    finally:
        await client.aclose()


async def test_bridge_starts_while_redis_is_down(own_redis: RedisServer, prefix: str) -> None:
    """With Redis down at start the WebSocket side serves, and its session says Redis is
    down; once Redis is up, clients get a resync (what was published before is lost), then
    events."""
    own_redis.kill()
    bridge = await start_bridge(own_redis.url, prefix)
    try:
        async with connect(ws_url(bridge)) as ws:
            session = await expect_greeting(ws)
            assert session["redis"] == "down" and session["down_seconds"] >= 0
            status, body = await http_get(f"http://127.0.0.1:{bridge.port}/healthz")
            assert (status, body["redis"]) == (503, "disconnected")
            own_redis.start()
            await bridge.source.wait_subscribed(10)
            resync = await recv_json(ws)
            assert (resync["type"], resync["data"]["reason"]) == ("resync", "redis-reconnected")
            await publish_once(own_redis.url, f"{prefix}queue-refresh", "q")
            assert await recv_event(ws) == {
                "type": "queue-refresh",
                "data": {"queueName": "q"},
            }
    finally:
        await bridge.stop()


async def test_password_protected_redis(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """With REDIS_PASSWORD's credentials the bridge subscribes; with wrong ones it says why."""
    with RedisServer(args=("--requirepass", "s3cret")) as server:
        good = await start_bridge(f"redis://:s3cret@127.0.0.1:{server.port}", prefix)
        bad = await start_bridge(f"redis://:wrong@127.0.0.1:{server.port}", prefix)
        try:
            await good.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
            async with await connected_client(good) as ws:
                await publish_once(
                    f"redis://:s3cret@127.0.0.1:{server.port}", f"{prefix}job-refresh", "a"
                )
                assert (await recv_json(ws))["data"] == {"jobId": "a"}
            await wait_for(lambda: "WRONGPASS" in caplog.text or "invalid" in caplog.text)
            assert await health_status(bad.port) == 503
            assert "wrong" not in caplog.text  # the password is never logged
        finally:
            await good.stop()
            await bad.stop()


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 426 "),
        (b"garbage\r\n\r\n", b""),  # not HTTP: closed without an answer
    ],
)
async def test_non_websocket_requests_get_an_http_error(
    bridge: Bridge, request_bytes: bytes, status: bytes
) -> None:
    """A plain HTTP request is told to upgrade; garbage is hung up on; clients are unaffected."""
    async with await connected_client(bridge) as ws:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
        writer.close()
        assert answer.startswith(status) and (status or answer == b"")
        await publish_once_via(bridge, "still-served")
        assert (await recv_json(ws))["data"]["jobId"] == "still-served"


async def publish_once_via(bridge: Bridge, payload: str) -> None:
    await publish_once(bridge.settings.redis_url, f"{bridge.settings.prefix}job-refresh", payload)


async def test_a_server_that_is_not_redis_is_reported_and_retried(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Pointed at something that does not speak RESP, the bridge logs it and keeps retrying."""

    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = await start_bridge(f"redis://127.0.0.1:{port}", prefix)
    try:
        await wait_for(lambda: "unavailable" in caplog.text, what="a warning")
        assert "not a Redis reply" in caplog.text
        assert bridge._tasks[0].done() is False  # still supervising
        assert await health_status(bridge.port) == 503
    finally:
        await bridge.stop()
        server.close()
