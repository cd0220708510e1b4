"""Real BullMQ data for the query cache: read-only reads of BullMQ's keys in Redis.

Lists (queues, counts, latest jobs) are read for every queue at once in one pipelined
round trip or two, rather than through the ``bullmq`` package's per-queue calls
(``getJobCounts`` is a round trip per queue; ``getJobs`` five per queue, and it does not
say which state each job is in). One job's details and logs come from the ``bullmq``
package itself (``getJob``, ``getState``, ``getJobLogs``). Nothing here writes.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bbb_tui.queue_stats import STATES, QueueCounts
from bridge.core.streams import meta_pattern, queue_of_meta
from bridge.core.subscriptions import MAX_QUEUE_NAME  # as the bridge: longer are left out

#: Jobs per queue and state looked at for the latest-jobs table.
LATEST_PER_STATE = 5
#: ``bullmq.Queue`` objects kept open for details (one Redis connection each).
OPEN_QUEUES = 4
TIMEOUT = 5.0
MAX_QUEUES = 1000

# state -> (Redis type, key suffix); BullMQ 5 keeps paused jobs in "paused", 6 in "wait".
_COUNTED = (
    ("waiting", "list", "wait"),
    ("waiting", "list", "paused"),
    ("active", "list", "active"),
    ("prioritized", "zset", "prioritized"),
    ("delayed", "zset", "delayed"),
    ("completed", "zset", "completed"),
    ("failed", "zset", "failed"),
    ("waiting-children", "zset", "waiting-children"),
)


class BullmqMissing(RuntimeError):
    """The ``bullmq`` package is not installed (it is the ``bullmq`` extra)."""


@dataclass(frozen=True, slots=True)
class JobSummary:
    id: str
    queue: str
    name: str
    state: str
    attempts: int
    timestamp: int  # ms, when it was added


@dataclass(frozen=True, slots=True)
class JobDetails:
    summary: JobSummary
    data: str  # JSON, as stored
    opts: str
    progress: str
    returnvalue: str
    failed_reason: str
    stacktrace: list[str]
    processed_on: int | None
    finished_on: int | None
    logs: list[str]


class BullmqData:
    """Read BullMQ's keys under ``prefix`` at ``redis_url``."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(
            redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._queues: OrderedDict[str, Any] = OrderedDict()  # bullmq.Queue, by name

    def _key(self, queue: str, suffix: str) -> str:
        return f"{self.prefix}:{queue}:{suffix}"

    async def queue_names(self) -> list[str]:
        """Every queue under the prefix (those with a ``meta`` hash), by name."""
        found: set[str] = set()
        prefix = self.prefix.encode()
        async for key in self.client.scan_iter(match=meta_pattern(prefix), count=1000):
            queue = queue_of_meta(prefix, key)
            if queue is not None and len(queue) <= MAX_QUEUE_NAME:
                found.add(queue.decode("utf-8", "replace"))
                if len(found) >= MAX_QUEUES:
                    break
        return sorted(found)

    async def counts(self, queues: list[str]) -> dict[str, QueueCounts]:
        """Each queue's jobs per state and paused flag: one round trip for all. A key of
        another type (WRONGTYPE) counts as none: one odd queue hides no other."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for _, kind, suffix in _COUNTED:
                key = self._key(queue, suffix)
                if kind == "list":
                    pipe.llen(key)
                else:
                    pipe.zcard(key)
            pipe.hexists(self._key(queue, "meta"), "paused")
        replies = iter(await pipe.execute(raise_on_error=False))
        result = {}
        for queue in queues:
            counts = dict.fromkeys(STATES, 0)
            for state, _, _ in _COUNTED:
                counts[state] += _int(next(replies))
            result[queue] = QueueCounts(counts, next(replies) is True)
        return result

    async def latest_jobs(self, queues: list[str], limit: int = 12) -> list[JobSummary]:
        """The newest jobs across queues (by when they were added), with their state:
        two round trips for all queues."""
        pipe = self.client.pipeline(transaction=False)
        wanted: list[tuple[str, str]] = []  # (queue, state) per reply
        for queue in queues:
            for state, kind, suffix in _COUNTED:
                key = self._key(queue, suffix)
                if kind == "list":
                    pipe.lrange(key, 0, LATEST_PER_STATE - 1)  # newest at the head
                else:
                    pipe.zrevrange(key, 0, LATEST_PER_STATE - 1)
                wanted.append((queue, state))
        found: dict[tuple[str, str], str] = {}
        replies = await pipe.execute(raise_on_error=False)
        for (queue, state), ids in zip(wanted, replies, strict=True):
            if not isinstance(ids, list):
                continue  # a key of another type: no jobs to show from it
            for raw in ids:
                found.setdefault((queue, raw.decode("utf-8", "replace")), state)
        if not found:
            return []
        pipe = self.client.pipeline(transaction=False)
        for queue, job in found:
            pipe.hmget(self._key(queue, job), "name", "timestamp", "atm", "attemptsMade")
        jobs = []
        replies = await pipe.execute(raise_on_error=False)
        for ((queue, job), state), fields in zip(found.items(), replies, strict=True):
            if not isinstance(fields, list):
                continue  # a job key of another type
            name, timestamp, atm, made = fields
            if timestamp is None:
                continue  # removed meanwhile
            jobs.append(
                JobSummary(
                    id=job,
                    queue=queue,
                    name=(name or b"").decode("utf-8", "replace"),
                    state=state,
                    attempts=_int(atm or made),
                    timestamp=_int(timestamp),
                )
            )
        jobs.sort(key=lambda j: j.timestamp, reverse=True)
        return jobs[:limit]

    async def job(self, queue: str, job_id: str) -> JobDetails | None:
        """One job, whole, with its log lines (through the ``bullmq`` package)."""
        bull = self._queue(queue)
        job = await bull.getJob(job_id)
        if job is None:
            return None
        # One after the other, not gathered: a fetch is cancelled when a newer one starts,
        # and redis-py can end a cancelled command with an error of its own, which a
        # gathered child would leave unretrieved (printed over the screen at exit).
        state = await job.getState()
        logs = await bull.getJobLogs(job_id, 0, 199)
        summary = JobSummary(
            id=str(job.id),
            queue=queue,
            name=str(job.name),
            state=str(state),
            attempts=int(job.attemptsMade or 0),
            timestamp=int(job.timestamp or 0),
        )
        return JobDetails(
            summary=summary,
            data=_json(job.data),
            opts=_json(job.opts),
            progress=_json(job.progress),
            returnvalue=_json(job.returnvalue),
            failed_reason=str(job.failedReason or ""),
            stacktrace=[str(line) for line in (job.stacktrace or [])],
            processed_on=job.processedOn,
            finished_on=job.finishedOn,
            logs=[str(line) for line in logs.get("logs", [])],
        )

    async def log_count(self, queue: str, job_id: str) -> int:
        return int(await self.client.llen(self._key(queue, f"{job_id}:logs")))

    async def scheduler_count(self, queues: list[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(self._key(queue, "repeat"))
        return sum(_int(n) for n in await pipe.execute(raise_on_error=False))

    def _queue(self, name: str) -> Any:
        try:
            from bullmq import Queue
        except ImportError:
            raise BullmqMissing(
                "job details need the bullmq package: pip install 'bbb-tui[bullmq]'"
            ) from None
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(
                name, {"connection": self.redis_url, "prefix": self.prefix}
            )
            if len(self._queues) > OPEN_QUEUES:
                _, evicted = self._queues.popitem(last=False)
                asyncio.get_running_loop().create_task(evicted.close())
        else:
            self._queues.move_to_end(name)
        return queue

    async def aclose(self) -> None:
        for queue in self._queues.values():
            await queue.close()
        self._queues.clear()
        await self.client.aclose()


async def has_queues(redis_url: str, prefix: str, timeout: float = 2.0) -> bool:
    """Whether any BullMQ queue exists under ``prefix`` (False if Redis does not answer)."""
    data = BullmqData(redis_url, prefix)
    try:
        async with asyncio.timeout(timeout):
            pattern = meta_pattern(prefix.encode())
            async for _ in data.client.scan_iter(match=pattern, count=1000):
                return True
        return False
    except (TimeoutError, OSError, aioredis.RedisError):
        return False
    finally:
        await data.client.aclose()


def _int(raw: object) -> int:
    """A count or a time as Redis gives it; anything else (an error, junk) is 0."""
    if isinstance(raw, bool) or not isinstance(raw, bytes | str | int):
        return 0
    try:
        return int(raw or 0)
    except ValueError:
        return 0


def _json(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
