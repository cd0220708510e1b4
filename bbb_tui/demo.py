"""``bbb-tui --demo``: Redis, a bridge and a workload, started and stopped together.

The workload is real BullMQ (producers and workers of the ``bullmq`` package, read by a
bridge with ``--source both``), or with ``--data simulated`` the synthetic publisher of
Better Bull Board's hints. Everything but Redis runs in this process, on the app's event
loop, so quitting (or a crash) cannot leave a bridge, worker or publisher behind; a
private redis-server is stopped on exit and, on Linux, also dies with this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from types import TracebackType

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bbb_tui.bullmq_workload import BullmqWorkload
from bridge.config import Settings
from bridge.core.protocol import DEFAULT_PREFIX, glob_escape
from bridge.core.streams import DEFAULT_BULLMQ_PREFIX
from bridge.core.workload import DEFAULT_RATE, Workload
from bridge.ops.logformat import redact_secrets
from bridge.serving.server import Bridge
from bridge.tools.embedded import EmbeddedRedisError, RedisChoice, choose_redis
from bridge.tools.simulate import run_workload
from bridge.wsio.plumbing import cancel_and_wait

__all__ = ["Demo", "EmbeddedRedisError", "LogToMonitor"]


def say_on_stderr(line: str) -> None:
    print(f"bbb-tui demo: {line}", file=sys.stderr, flush=True)


class Demo:
    """An async context manager: on entry Redis, bridge and publisher are up, in that order.

    Each step reports one line through ``say``. On exit all three stop (publisher,
    bridge, then Redis), whatever happened inside.
    """

    def __init__(
        self,
        *,
        configured_redis: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        rate: float = DEFAULT_RATE,
        say: Callable[[str], None] = say_on_stderr,
        choose: Callable[[str | None], RedisChoice] = choose_redis,
        bullmq_prefix: str | None = None,
    ) -> None:
        self._configured = configured_redis
        self.prefix = prefix
        #: Real BullMQ under this prefix; None: the synthetic publisher.
        self.bullmq_prefix = bullmq_prefix
        self.workload: Workload | BullmqWorkload = Workload(rate=rate)
        self._rate = rate
        self._say = say
        self._choose = choose
        self.redis: RedisChoice | None = None
        self.bridge: Bridge | None = None
        self._client: aioredis.Redis | None = None
        self.publisher: asyncio.Task[int] | None = None

    @property
    def url(self) -> str:
        assert self.bridge is not None
        return f"ws://127.0.0.1:{self.bridge.port}"

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    async def __aenter__(self) -> Demo:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        self.redis = await asyncio.to_thread(self._choose, self._configured)
        self._say(f"Redis: {self.redis.description}")
        real = self.bullmq_prefix is not None
        self.bridge = Bridge(
            Settings(
                host="127.0.0.1",
                port=0,
                redis_url=self.redis.url,
                prefix=self.prefix,
                source="both" if real else "pubsub",
                bullmq_prefix=self.bullmq_prefix or DEFAULT_BULLMQ_PREFIX,
                rescan=2.0,
            )
        )
        await self.bridge.start()
        await self.bridge.wait_ready(10)
        streams = f"BullMQ's streams under {self.bullmq_prefix}: and " if real else ""
        self._say(f"bridge: listening on {self.url}, reading {streams}{self.prefix}*")
        if self.bullmq_prefix is not None:
            workload = BullmqWorkload(self.redis.url, self.bullmq_prefix, rate=self._rate)
            self.workload = workload
            await workload.start()
            self._say(f"BullMQ: producers and workers on 4 queues, {self._rate:g} jobs/s")
            return
        self._client = aioredis.Redis.from_url(self.redis.url)
        self.publisher = asyncio.create_task(self._publish(), name="demo-publisher")
        self._say(f"publisher: synthetic workload, {self.workload.rate:g} job changes/s")

    async def _publish(self) -> int:
        assert self._client is not None and isinstance(self.workload, Workload)
        try:
            return await run_workload(self._client, self.prefix, self.workload)
        except (RedisError, OSError) as exc:
            logging.getLogger("bridge").warning("Demo publisher stopped: %s", exc)
            return 0

    async def stop(self) -> None:
        """Stop the workload, the bridge and a private Redis (safe to call twice); in a
        Redis of the user's, remove the demo's BullMQ keys."""
        if isinstance(self.workload, BullmqWorkload):
            await self.workload.stop()
            if self.redis is not None and self.redis.server is None:
                removed = await remove_keys(self.redis.url, self.workload.prefix)
                self._say(f"BullMQ: removed the demo's {removed} keys ({self.workload.prefix}:*)")
            self.workload = Workload(rate=self._rate)  # stopped once
        if self.publisher is not None:
            await cancel_and_wait([self.publisher])
            self.publisher = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None
        if self.bridge is not None:
            await self.bridge.stop()
            self.bridge = None
        if self.redis is not None and self.redis.server is not None:
            await asyncio.to_thread(self.redis.server.stop)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def remove_keys(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (the demo's queues, in a Redis it did not start)."""
    client = aioredis.Redis.from_url(redis_url)
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{glob_escape(prefix)}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(await client.unlink(*batch))
                batch = []
        if batch:
            removed += int(await client.unlink(*batch))
    except (RedisError, OSError) as exc:
        logging.getLogger("bridge").warning("Demo: could not remove its keys: %s", exc)
    finally:
        await client.aclose()
    return removed


class LogToMonitor(logging.Handler):
    """Bridge log records as info lines in the TUI's event log (stderr belongs to the screen)."""

    def __init__(self, note: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._note = note

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._note(f"bridge: {redact_secrets(record.getMessage())}")
        except Exception:  # a log line must never take the app down
            self.handleError(record)
