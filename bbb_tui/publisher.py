"""Fire test events into Redis from the TUI, so they travel the whole way back."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bridge.core.protocol import EventType, channel_name


class TestEventPublisher:
    """PUBLISH on the real channels; a lazily opened client that fails fast when Redis is away."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._client: aioredis.Redis | None = None

    async def publish(self, events: list[tuple[EventType, str]]) -> list[int]:
        """Publish each (type, payload); return how many subscribers received each."""
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
            )
        pipe = self._client.pipeline(transaction=False)
        for event_type, payload in events:
            pipe.publish(channel_name(self.prefix, event_type), payload)
        try:
            return [int(n) for n in await pipe.execute()]
        except BaseException:
            await self.aclose()  # the next try starts afresh (and reports afresh)
            raise

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
