"""A synthetic Better Bull Board ingest: the event mix and rhythm of a real deployment.

Pure and driven by the caller's clock and random generator: :meth:`Workload.step`
advances simulated time and returns the events the ingest would publish, in order.

- A few named queues. Jobs are created (waiting), picked up (active), and finish
  (completed, or failed about one time in ten). Every database batch of job changes
  publishes one ``job-refresh "1"`` and one ``single-job-refresh <id>`` per job.
- Active jobs write log lines: ``job-log-refresh <id>`` and ``log-refresh <id>``.
- Queues are polled: ``queue-refresh "1"`` and ``single-queue-refresh <name>`` each.
- Job schedulers fire: ``job-scheduler-refresh`` and ``single-job-scheduler-refresh``,
  and create a job.
- Now and then an import creates a few hundred jobs in one batch: a burst.
- The rate drifts slowly around ``rate`` (job changes per second), as real load does.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from bridge.core.protocol import EventType

QUEUES = ("emails", "imports", "reports", "webhooks")
SCHEDULERS = ("nightly-report", "hourly-sync", "cleanup-every-5m")
QUEUE_POLL_PERIOD = 2.0  # seconds
SCHEDULER_PERIOD = 5.0  # seconds between scheduler firings (any scheduler)
BURST_CHANCE_PER_SECOND = 1 / 20
BURST_SIZE = (200, 400)
FAIL_RATIO = 0.1
LOG_CHANCE_PER_SECOND = 0.1  # per active job
MAX_ACTIVE = 40  # jobs the workers have in hand at most

Published = tuple[EventType, str]  # an event as a publisher sends it


#: The rates the workload can be run at, in job changes per second: each step is plain
#: Python on the caller's event loop, so the top is what keeps a demo responsive.
MIN_RATE = 0.5
MAX_RATE = 20_000.0
DEFAULT_RATE = 20.0


@dataclass
class Workload:
    """Step it with the time that passed; it returns what to publish."""

    rate: float = DEFAULT_RATE  # job changes per second, on average
    rng: random.Random = field(default_factory=random.Random)
    now: float = 0.0
    _next_id: int = 0
    _waiting: deque[str] = field(default_factory=deque)
    _active: deque[str] = field(default_factory=deque)
    _job_queue: dict[str, str] = field(default_factory=dict)
    _carry: float = 0.0
    _next_poll: float = 0.0
    _next_scheduler: float = SCHEDULER_PERIOD
    state: dict[str, str] = field(default_factory=dict)  # job id -> its latest state

    def current_rate(self) -> float:
        """The drifting rate: ``rate`` +-50% over a two-minute cycle."""
        return max(self.rate * (1 + 0.5 * math.sin(self.now * 2 * math.pi / 120)), 0.0)

    def step(self, dt: float) -> list[Published]:
        """Advance ``dt`` seconds; return the events published meanwhile, in order."""
        self.now += dt
        events: list[Published] = []
        changed: list[str] = []

        self._carry += self.current_rate() * dt
        changes, self._carry = int(self._carry), self._carry % 1
        for _ in range(changes):
            changed.append(self._change_one())
        if self.rng.random() < BURST_CHANCE_PER_SECOND * dt:
            changed += [self._create() for _ in range(self.rng.randint(*BURST_SIZE))]
        if self.now >= self._next_scheduler:
            self._next_scheduler += SCHEDULER_PERIOD
            key = self.rng.choice(SCHEDULERS)
            events += [
                (EventType.JOB_SCHEDULER_REFRESH, "1"),
                (EventType.SINGLE_JOB_SCHEDULER_REFRESH, key),
            ]
            changed.append(self._create())
        if changed:  # one database batch
            events.append((EventType.JOB_REFRESH, "1"))
            events += [(EventType.SINGLE_JOB_REFRESH, job) for job in dict.fromkeys(changed)]
        for job in self._active:
            if self.rng.random() < LOG_CHANCE_PER_SECOND * dt:
                events += [(EventType.JOB_LOG_REFRESH, job), (EventType.LOG_REFRESH, job)]
        if self.now >= self._next_poll:
            self._next_poll += QUEUE_POLL_PERIOD
            events.append((EventType.QUEUE_REFRESH, "1"))
            events += [(EventType.SINGLE_QUEUE_REFRESH, queue) for queue in QUEUES]
        return events

    def _change_one(self) -> str:
        """Move one job along: start a waiting one, finish an active one, or create one."""
        if self._active and (len(self._active) >= MAX_ACTIVE or self.rng.random() < 0.35):
            job = self._active.popleft()
            self._set(job, "failed" if self.rng.random() < FAIL_RATIO else "completed")
            self._job_queue.pop(job, None)
            return job
        if self._waiting and self.rng.random() < 0.6:
            job = self._waiting.popleft()
            self._active.append(job)
            self._set(job, "active")
            return job
        return self._create()

    def _create(self) -> str:
        self._next_id += 1
        queue = self.rng.choice(QUEUES)
        job = f"{queue}-{self._next_id}"
        self._waiting.append(job)
        self._job_queue[job] = queue
        self._set(job, "waiting")
        return job

    def _set(self, job: str, state: str) -> None:
        self.state[job] = state
        if len(self.state) > 10_000:  # keep the record bounded: forget finished jobs
            for old in [j for j, s in self.state.items() if s in ("completed", "failed")]:
                del self.state[old]
