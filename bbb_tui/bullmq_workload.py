"""The demo's real BullMQ workload: producers and workers of the ``bullmq`` package.

Four queues with their own job names, durations and failure rates; progress and log
lines while jobs run; retries with backoff, some delayed and some prioritized jobs; a job
scheduler; and now and then a bulk add of a few hundred jobs (the burst a real upsert
makes). ``rate`` (jobs added per second, on average) is read live: the TUI's ``+`` and
``-`` change it. :meth:`stop` closes the workers cleanly (a job in hand finishes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

from bridge.wsio.plumbing import cancel_and_wait

log = logging.getLogger("bridge")

DEFAULT_JOB_RATE = 8.0
#: Seconds between bulk adds, on average.
BULK_EVERY = 40.0
#: Seconds the workers get to finish the jobs in hand when the demo stops.
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True)
class QueuePlan:
    name: str
    jobs: tuple[str, ...]
    seconds: tuple[float, float]  # how long a job runs: uniform between these
    failure: float  # the chance an attempt fails
    concurrency: int


PLANS = (
    QueuePlan("emails", ("send-welcome", "send-receipt", "send-digest"), (0.05, 0.4), 0.06, 8),
    QueuePlan("images", ("resize", "thumbnail", "watermark"), (0.2, 1.5), 0.04, 8),
    QueuePlan("reports", ("daily-sales", "export-csv"), (0.5, 2.5), 0.15, 8),
    QueuePlan("webhooks", ("deliver",), (0.05, 0.8), 0.25, 8),
)


class BullmqWorkload:
    """Producers and workers on ``redis_url`` under ``prefix``; see the module docstring."""

    def __init__(
        self, redis_url: str, prefix: str = "bull", rate: float = DEFAULT_JOB_RATE
    ) -> None:
        from bullmq import Queue  # the bullmq extra: imported only when a demo runs

        self.redis_url, self.prefix, self.rate = redis_url, prefix, rate
        self._options = {"connection": redis_url, "prefix": prefix}
        self.queues = {plan.name: Queue(plan.name, self._options) for plan in PLANS}
        self.workers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._random = random.Random()
        self.added = 0

    async def start(self) -> None:
        from bullmq import Worker

        for plan in PLANS:
            worker = Worker(
                plan.name,
                self._processor(plan),
                {**self._options, "concurrency": plan.concurrency},
            )
            self.workers.append(worker)
        try:  # (a job template here fails in bullmq 3.4's Lua: the job is named after it)
            await self.queues["reports"].upsertJobScheduler("rollup", {"every": 15_000})
        except Exception as exc:  # a demo without its scheduler is still a demo
            log.warning("Demo: no job scheduler (%s)", exc)
        self._tasks = [
            asyncio.create_task(self._produce(), name="bullmq-producer"),
            asyncio.create_task(self._bulk(), name="bullmq-bulk"),
        ]

    def _processor(self, plan: QueuePlan) -> Any:
        async def process(job: Any, token: str) -> Any:
            low, high = plan.seconds
            seconds = self._random.uniform(low, high)
            await job.log(f"{plan.name}/{job.name}: started, about {seconds:.2f}s of work")
            for step in (25, 50, 75):
                await asyncio.sleep(seconds / 4)
                await job.updateProgress(step)
            await asyncio.sleep(seconds / 4)
            if self._random.random() < plan.failure:
                await job.log("upstream answered 503")
                raise RuntimeError(f"{plan.name}: upstream service unavailable (503)")
            await job.log("done")
            return {"took": round(seconds, 3)}

        return process

    async def _produce(self) -> None:
        rng = self._random
        while True:
            await asyncio.sleep(rng.expovariate(max(self.rate, 0.1)))
            plan = rng.choice(PLANS)
            options: dict[str, Any] = {
                "attempts": 3,
                "backoff": {"type": "exponential", "delay": 500},
                "removeOnComplete": 500,
                "removeOnFail": 1000,
            }
            if rng.random() < 0.1:
                options["delay"] = rng.randint(1_000, 8_000)
            elif rng.random() < 0.1:
                options["priority"] = rng.randint(1, 5)
            try:
                await self.queues[plan.name].add(
                    rng.choice(plan.jobs), {"n": self.added, "user": rng.randint(1, 9999)}, options
                )
                self.added += 1
            except Exception as exc:  # Redis gone: say so once in a while, keep trying
                log.warning("Demo producer: %s", exc)
                await asyncio.sleep(1.0)

    async def _bulk(self) -> None:
        rng = self._random
        while True:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * BULK_EVERY)
            size = rng.randint(200, 400)
            jobs = [
                {"name": "import-row", "data": {"row": n}, "opts": {"removeOnComplete": 500}}
                for n in range(size)
            ]
            try:
                await self.queues["emails"].addBulk(jobs)
                self.added += size
                log.info("Demo producer: a bulk add of %d jobs to emails", size)
            except Exception as exc:
                log.warning("Demo producer: bulk add failed: %s", exc)

    async def stop(self) -> None:
        """Stop producing, close the workers (jobs in hand finish, for CLOSE_TIMEOUT at most),
        close the queues."""
        await cancel_and_wait(self._tasks)
        self._tasks = []
        # Together, and briefly: a job still running then is retried by BullMQ later.
        closing = [asyncio.wait_for(worker.close(), CLOSE_TIMEOUT) for worker in self.workers]
        await asyncio.gather(*closing, return_exceptions=True)
        self.workers = []
        for queue in self.queues.values():
            with contextlib.suppress(Exception):
                await queue.close()
