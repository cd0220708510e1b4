"""What BullMQ's events say about each queue, computed as they arrive (pure, no I/O).

The bridge's stream frames carry each job transition with its time (``streamId`` is
``<ms>-<n>``): from them, per queue, jobs completed and failed in the last minute, and
how long jobs waited (``added``/``waiting`` to ``active``) and ran (``active`` to
``completed``/``failed``), as p50 and p95 of the last few hundred. The counts per state
come from Redis, on each ``queues/table`` refetch (:class:`QueueCounts`); together they
make a queues view row.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from bridge.core.protocol import Event

WINDOW_MS = 60_000  # "per minute"
SAMPLES = 500  # durations kept per queue, for the percentiles
MAX_JOBS = 20_000  # jobs whose last start is remembered, all queues together
MAX_QUEUES = 1000
#: The states whose counts a row shows, in BullMQ's words.
STATES = ("waiting", "active", "delayed", "prioritized", "completed", "failed", "waiting-children")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """One queue's jobs per state and whether it is paused, as read from Redis."""

    counts: dict[str, int]
    paused: bool

    @property
    def backlog(self) -> int:
        return self.counts.get("waiting", 0) + self.counts.get("prioritized", 0)


@dataclass(slots=True)
class QueueActivity:
    """What one queue's events said lately."""

    completed: deque[int] = field(default_factory=deque)  # times (ms) in the last minute
    failed: deque[int] = field(default_factory=deque)
    waits: deque[int] = field(default_factory=lambda: deque(maxlen=SAMPLES))  # ms
    runs: deque[int] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    stalled: int = 0
    exhausted: int = 0  # retries-exhausted
    last_ms: int = 0

    def per_minute(self, now_ms: int) -> tuple[int, int]:
        """Completed and failed in the minute up to ``now_ms``."""
        for times in (self.completed, self.failed):
            while times and times[0] <= now_ms - WINDOW_MS:
                times.popleft()
        return len(self.completed), len(self.failed)


def percentile(samples: deque[int], fraction: float) -> int | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


class QueueStats:
    """Per queue activity, fed every event (:meth:`apply`); events without BullMQ's
    ``queueName``/``event``/``streamId`` (published hints) are only counted."""

    def __init__(self) -> None:
        self.queues: OrderedDict[str, QueueActivity] = OrderedDict()
        # (queue, job) -> when it started waiting, and when it went active (ms).
        self._waiting: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._active: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.latest_ms = 0  # the newest entry time seen: "now" in the events' clock
        self.jobs_queue: OrderedDict[str, str] = OrderedDict()  # job id -> its queue

    def apply(self, event: Event) -> None:
        data = event.data
        queue, name, stream_id = data.get("queueName"), data.get("event"), data.get("streamId")
        if not (isinstance(queue, str) and isinstance(name, str) and isinstance(stream_id, str)):
            return
        ms_text = stream_id.partition("-")[0]
        if not ms_text.isdigit():
            return
        ms = int(ms_text)
        self.latest_ms = max(self.latest_ms, ms)
        activity = self.queues.get(queue)
        if activity is None:
            activity = self.queues[queue] = QueueActivity()
            if len(self.queues) > MAX_QUEUES:
                self.queues.popitem(last=False)
        activity.last_ms = ms
        job = data.get("jobId")
        if not isinstance(job, str):
            return
        self._remember_queue(job, queue)
        key = (queue, job)
        if name in ("added", "waiting", "delayed"):
            if name != "delayed":
                _put(self._waiting, key, ms)
        elif name == "active":
            started = self._waiting.pop(key, None)
            if started is not None:
                activity.waits.append(ms - started)
            _put(self._active, key, ms)
        elif name in ("completed", "failed"):
            (activity.completed if name == "completed" else activity.failed).append(ms)
            started = self._active.pop(key, None)
            if started is not None:
                activity.runs.append(ms - started)
        elif name == "stalled":
            activity.stalled += 1
        elif name == "retries-exhausted":
            activity.exhausted += 1

    def _remember_queue(self, job: str, queue: str) -> None:
        jobs = self.jobs_queue
        jobs[job] = queue
        jobs.move_to_end(job)
        if len(jobs) > MAX_JOBS:
            jobs.popitem(last=False)

    def activity(self, queue: str) -> QueueActivity:
        return self.queues.get(queue) or QueueActivity()


def _put(table: OrderedDict[tuple[str, str], int], key: tuple[str, str], ms: int) -> None:
    table[key] = ms
    table.move_to_end(key)
    if len(table) > MAX_JOBS:
        table.popitem(last=False)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queues view."""

    name: str
    counts: QueueCounts
    completed_per_min: int
    failed_per_min: int
    wait_p50: int | None
    wait_p95: int | None
    run_p50: int | None
    run_p95: int | None
    stalled: int
    exhausted: int
    growing: bool  # the backlog grew since the previous read

    @property
    def alarming(self) -> bool:
        return bool(self.stalled or self.exhausted or self.growing)


def queue_rows(
    counts: dict[str, QueueCounts],
    stats: QueueStats,
    previous: dict[str, QueueCounts],
    now_ms: int,
) -> list[QueueRow]:
    """The queues view, one row per queue in ``counts``, by name."""
    rows = []
    for name in sorted(counts):
        now = counts[name]
        activity = stats.activity(name)
        done, failed = activity.per_minute(now_ms)
        before = previous.get(name)
        rows.append(
            QueueRow(
                name=name,
                counts=now,
                completed_per_min=done,
                failed_per_min=failed,
                wait_p50=percentile(activity.waits, 0.5),
                wait_p95=percentile(activity.waits, 0.95),
                run_p50=percentile(activity.runs, 0.5),
                run_p95=percentile(activity.runs, 0.95),
                stalled=activity.stalled,
                exhausted=activity.exhausted,
                growing=before is not None and now.backlog > before.backlog > 0,
            )
        )
    return rows


def duration(ms: int | None) -> str:
    """``1.2s``, ``340ms``, ``2m05s``; ``-`` for none."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"
