"""Real fetches for the query cache (``--data bullmq``): each query the cache sets
fetching is read from BullMQ's keys, and completes when the read returns.

React Query's semantics, as the simulation has them: a fetch starts on invalidation;
an invalidation during a fetch restarts it (the older read is cancelled, its answer
dropped), so a burst costs one read per query, not one per event. Reads that fail
complete with the error as their data, in one line: the table shows it, nothing breaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bbb_tui.bullmq_data import BullmqData, JobSummary
from bbb_tui.cache import QueryCache
from bbb_tui.queue_stats import QueueCounts, QueueRow, QueueStats, duration, queue_rows
from bridge.core.protocol import QueryKey
from bridge.wsio.plumbing import cancel_and_wait


class Fetcher:
    """Starts, restarts and completes the cache's fetches against ``data``.

    ``on_queues`` gets the queues view's rows, ``on_jobs`` the latest jobs, each time
    the query behind them is refetched.
    """

    def __init__(
        self,
        cache: QueryCache,
        data: BullmqData,
        stats: QueueStats,
        *,
        clock: Callable[[], float],
        on_queues: Callable[[list[QueueRow]], None],
        on_jobs: Callable[[list[JobSummary]], None],
    ) -> None:
        self.cache, self.data, self.stats = cache, data, stats
        self._clock = clock
        self._on_queues, self._on_jobs = on_queues, on_jobs
        self._running: dict[QueryKey, tuple[float, asyncio.Task[None]]] = {}
        self.queues: list[str] = []
        self.counts: dict[str, QueueCounts] = {}

    def tick(self) -> None:
        """Start a read for every query newly set fetching (cancelling a superseded one)."""
        for key, started in self.cache.fetching():
            running = self._running.get(key)
            if running is not None and running[0] == started:
                continue
            if running is not None:
                running[1].cancel()
            task = asyncio.get_running_loop().create_task(self._fetch(key, started))
            self._running[key] = (started, task)

    async def stop(self) -> None:
        """Cancel the reads under way, and wait for them: the connections they hold go back
        to the pool before it is closed."""
        running, self._running = self._running, {}
        await cancel_and_wait(task for _, task in running.values())

    async def _fetch(self, key: QueryKey, started: float) -> None:
        try:
            answer = await self.answer(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down, a key of another type: shown, never raised
            answer = f"error: {type(exc).__name__}: {exc}"
        if self._running.get(key, (None,))[0] == started:
            del self._running[key]
        self.cache.complete(key, started, answer, self._clock())

    async def answer(self, key: QueryKey) -> str:
        """Read what ``key`` shows; return it in one line (and feed the views)."""
        name = key[0]
        if name == "queues/table":
            self.queues = await self.data.queue_names()
            previous, self.counts = self.counts, await self.data.counts(self.queues)
            now_ms = int(time.time() * 1000)  # not the events' newest: one may lie
            self._on_queues(queue_rows(self.counts, self.stats, previous, now_ms))
            shown = ", ".join(
                f"{q} {c.backlog}w {c.counts['active']}a" for q, c in list(self.counts.items())[:5]
            )
            return f"{len(self.queues)} queue(s): {shown or 'none yet'}"
        queues = self.queues or await self.data.queue_names()
        if name in ("queues/stats", "jobs/stats"):
            counts = await self.data.counts(queues)
            total = {state: sum(c.counts[state] for c in counts.values()) for state in _SHOWN}
            text = ", ".join(f"{state} {n:,}" for state, n in total.items())
            if name == "queues/stats":
                paused = sum(c.paused for c in counts.values())
                schedulers = await self.data.scheduler_count(queues)
                return f"{text}; {paused} paused, {schedulers} scheduler(s)"
            return text
        if name == "jobs/table":
            jobs = await self.data.latest_jobs(queues)
            self._on_jobs(jobs)
            latest = ", ".join(f"{j.id} {j.queue}/{j.name} {j.state}" for j in jobs[:4])
            return f"latest: {latest or 'no jobs yet'}"
        job = key[1]
        queue = self.stats.jobs_queue.get(job)
        if queue is None:
            return "no stream event named its queue yet"
        if name == "jobs/logs":
            return f"{await self.data.log_count(queue, job)} log line(s)"
        details = await self.data.job(queue, job)
        if details is None:
            return f"{queue}: no such job (removed?)"
        summary = details.summary
        took = (
            duration(details.finished_on - details.processed_on)
            if details.finished_on and details.processed_on
            else "-"
        )
        return (
            f"{queue}/{summary.name} {summary.state}, attempts {summary.attempts}, "
            f"progress {details.progress}, ran {took}"
        )


_SHOWN = ("waiting", "active", "delayed", "failed", "completed")
