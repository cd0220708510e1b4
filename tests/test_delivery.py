"""Opt-in batching (?batch=<ms>) and permessage-deflate (--compression) (issue 7)."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bbb_tui.app import BbbApp
from bbb_tui.cache import QueryCache
from bbb_tui.cli import parse, settings_from
from bbb_tui.client import ConnState
from bbb_tui.monitor import Monitor
from bridge.core.protocol import EventType
from bridge.core.subscriptions import Delivery, parse_batch
from bridge.serving.delivery import deflate_frame, encode
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    SUBSCRIBE_TIMEOUT,
    Publisher,
    expect_greeting,
    recv_json,
    start_bridge,
    wait_for,
)

JOB = EventType.SINGLE_JOB_REFRESH


def inflate(frame: bytes) -> bytes:
    """What a client's permessage-deflate does with one of our frames."""
    assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
    length, start = frame[1], 2
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    body = frame[start : start + length]
    return zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")


def test_a_deflated_frame_inflates_to_the_message() -> None:
    """A compressed frame is RSV1-marked and inflates (RFC 7692) to the original message."""
    message = b'{"type":"job-refresh","data":{"jobId":"1"},"seq":1}'
    assert inflate(deflate_frame(message)) == message


def test_a_batch_is_one_json_array_frame() -> None:
    """A batch is one text frame holding a JSON array, compressed or not."""
    frames = [b'{"a":1}', b'{"b":2}']
    assert encode(frames, Delivery(batch=0.1)) == b"\x81\x11" + b'[{"a":1},{"b":2}]'
    assert json.loads(inflate(encode(frames, Delivery(batch=0.1, deflate=15)))) == [
        {"a": 1},
        {"b": 2},
    ]


@pytest.mark.parametrize("query", ["batch=x", "batch=-1", "batch=10001", "batch=1.5"])
def test_bad_batch_values_say_why(query: str) -> None:
    """batch= must be whole milliseconds from 0 to 10,000; anything else says so."""
    with pytest.raises(ValueError, match="milliseconds"):
        parse_batch(query)


async def events(ws: ClientConnection, count: int) -> list[tuple[str, int]]:
    """(jobId, seq) of the next ``count`` events, whether framed one by one or in arrays."""
    got: list[tuple[str, int]] = []
    while len(got) < count:
        message = await recv_json(ws)
        got += [
            (m["data"]["jobId"], m["seq"])
            for m in (message if isinstance(message, list) else [message])
        ]
    return got


@pytest.fixture
async def compressing(redis_server: RedisServer, prefix: str) -> AsyncIterator[Bridge]:
    bridge = await start_bridge(redis_server.url, prefix, compression=True)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        yield bridge
    finally:
        await bridge.stop()


async def test_batched_and_compressed_clients_get_every_event_in_order(
    compressing: Bridge, publish: Publisher
) -> None:
    """Four clients, one per mode, on one bridge: the same events, in order, fewer bytes."""
    url = f"ws://127.0.0.1:{compressing.port}/"
    async with (
        connect(url, compression=None) as plain,
        connect(url + "?batch=50", compression=None) as batched,
        connect(url) as deflated,  # websockets offers permessage-deflate by default
        connect(url + "?batch=50") as both,
    ):
        for ws in (plain, batched, deflated, both):
            await expect_greeting(ws)
        assert deflated.protocol.extensions and not plain.protocol.extensions
        pipe = publish.client.pipeline(transaction=False)
        for i in range(200):
            pipe.publish(publish.channel(JOB), f"job-{i:04d}")
        await pipe.execute()

        expected = [(f"job-{i:04d}", i + 1) for i in range(200)]
        assert await events(plain, 200) == expected
        assert await events(deflated, 200) == expected
        assert await events(batched, 200) == expected
        assert await events(both, 200) == expected


async def test_batching_and_compression_save_bytes(compressing: Bridge, publish: Publisher) -> None:
    """The bridge's own byte counter, per mode, for the same 200 events."""
    base = f"ws://127.0.0.1:{compressing.port}/"
    sizes = {}
    for mode, query, compression in [
        ("plain", "", None),
        ("deflate", "", "deflate"),
        ("batch", "?batch=100", None),
        ("batch+deflate", "?batch=100", "deflate"),
    ]:
        async with connect(base + query, compression=compression) as ws:
            await expect_greeting(ws)
            before = compressing.hub.bytes_out
            pipe = publish.client.pipeline(transaction=False)
            for i in range(200):
                pipe.publish(publish.channel(JOB), f"job-{i:04d}")
            await pipe.execute()
            assert len(await events(ws, 200)) == 200  # read: the socket closes cleanly
            sizes[mode] = compressing.hub.bytes_out - before
    assert sizes["batch+deflate"] * 5 < sizes["plain"], sizes
    assert sizes["batch"] < sizes["plain"] and sizes["deflate"] < sizes["plain"], sizes


async def test_a_batched_client_gets_control_messages_at_once(
    redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """A resync is not held for the batch window, and comes after what was held."""
    bridge = await start_bridge(redis_server.url, prefix)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        async with connect(f"ws://127.0.0.1:{bridge.port}/?batch=5000") as ws:
            await expect_greeting(ws)
            await publish(JOB, "held")
            await wait_for(lambda: bridge.journal.seq == 1)
            bridge._on_redis_gap(1.0)  # as if the Redis subscription came back
            held = await asyncio.wait_for(ws.recv(), 1)
            assert [m["data"]["jobId"] for m in json.loads(held)] == ["held"]
            assert (await recv_json(ws, timeout=1))["type"] == "resync"
    finally:
        await bridge.stop()


async def test_a_bad_batch_is_a_400(compressing: Bridge) -> None:
    """A malformed batch= is refused with 400 before the upgrade."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{compressing.port}/?batch=soon")
    assert refused.value.response.status_code == 400


def test_the_tui_reads_batches_as_their_events() -> None:
    """The TUI's monitor takes an array frame as its events (seq included); a broken one is
    malformed."""
    monitor = Monitor(QueryCache(latency=0.0))
    batch = '[{"type":"job-refresh","data":{"jobId":"a"},"seq":7},' + (
        '{"type":"queue-refresh","data":{"queueName":"q"},"seq":8}]'
    )
    monitor.feed_many([batch, "[not json"])
    assert monitor.events == 2 and monitor.position.last_seq == 8
    assert monitor.by_type["job-refresh"] == 1 and monitor.by_type["queue-refresh"] == 1
    assert monitor.by_type["malformed"] == 1
    assert monitor.received == 3  # two messages, and the broken frame


async def test_the_tui_with_batch_gets_every_event(
    bridge: Bridge, redis_server: RedisServer, prefix: str
) -> None:
    """bbb-tui --batch asks for batches and still counts every event, with no problems."""
    args = parse(
        ["--url", f"ws://127.0.0.1:{bridge.port}", "--batch", "50", "--redis-url", redis_server.url,
         "--prefix", prefix], {}
    )  # fmt: skip
    settings = settings_from(args)
    assert settings.url.endswith("/?batch=50")
    app = BbbApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10, what="connected")
        await pilot.press("a")
        await wait_for(lambda: app.monitor.events == 4, what="the four seed events, batched")
        assert app.monitor.problems == 0
