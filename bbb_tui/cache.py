"""A simulated React Query cache, pure and driven by the caller's clock.

It behaves as the web client's cache does (docs/protocol.md section 3): invalidating a key
(a prefix match) marks it stale and, since every query here is in use, refetches it;
an invalidation that arrives while a fetch is in flight cancels that fetch and starts
a new one, so a burst costs one refetch, not one per event. A fetch completes after a
simulated latency and returns a snapshot of :class:`Backend`, the server-side truth
that the events describe, so a refetch visibly changes what the table shows.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from bridge.core.protocol import Event, EventType, QueryKey, invalidated_keys
from bridge.core.sanitize import fit

# Section 3 as a per-type plan, derived once from the protocol table: the fixed keys,
# and the name of the per-id key (``("jobs/single", id)``) if the type has one.
_PROBE = "\0id"
_PLAN: dict[EventType, tuple[tuple[QueryKey, ...], str | None]] = {
    t: (
        tuple(k for k in invalidated_keys(t, _PROBE) if _PROBE not in k),
        next((k[0] for k in invalidated_keys(t, _PROBE) if _PROBE in k), None),
    )
    for t in EventType
}

#: The list queries a dashboard keeps mounted; per-id keys are added as events name them.
BASE_KEYS: tuple[QueryKey, ...] = (
    ("jobs/table",),
    ("jobs/stats",),
    ("queues/table",),
    ("queues/stats",),
)

GENERIC_ID = "1"  # "something changed", not an id


class QueryStatus(enum.StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    FETCHING = "fetching"


_FETCHING = QueryStatus.FETCHING  # a global: cheaper than the attribute, per event


def key_label(key: QueryKey) -> str:
    """``("jobs/single", "42")`` -> ``"jobs/single 42"``."""
    return " ".join(key)


#: Terminal cells of a fetch's answer kept (a summary line; a screen is narrower).
MAX_DATA = 1000
#: Fetches a query remembers (its history, shown by Enter on its row).
HISTORY = 50


class Fetched(NamedTuple):
    """One completed fetch and what led to it (times on the cache's clock)."""

    invalidated_at: float | None  # the first invalidation of the burst (None: initial load)
    invalidations: int  # how many came before it completed (a burst: one fetch)
    started: float  # the fetch that answered (each invalidation restarts it)
    finished: float
    data: str


@dataclass(slots=True)
class Query:
    key: QueryKey
    status: QueryStatus = QueryStatus.STALE
    invalidations: int = 0
    fetches: int = 0  # completed fetches
    cancelled: int = 0  # fetches restarted by a newer invalidation
    fetch_started: float | None = None
    last_fetched: float | None = None
    last_duration: float | None = None
    data: str = "-"
    invalidated_at: float | None = None  # when the current burst began
    counted: int = 0  # invalidations already in the history
    #: Made at the first completed fetch: in a burst, most per-id queries never get one.
    history: deque[Fetched] | None = None


@dataclass(slots=True)
class Backend:
    """What the server would answer: facts accumulated from the events seen."""

    recent_jobs: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    job_events: int = 0
    log_lines: Counter[str] = field(default_factory=Counter)
    queue_events: Counter[str] = field(default_factory=Counter)
    scheduler_events: int = 0
    job_refreshes: Counter[str] = field(default_factory=Counter)

    _MAX_IDS = 1000  # ids kept in the counters; beyond, the oldest are forgotten

    def apply(self, event: Event) -> None:
        """Record what one event says happened (called per message: kept branch-cheap)."""
        t, ident = event.type, event.id
        specific = ident != GENERIC_ID and ident != ""
        if t is EventType.SINGLE_JOB_REFRESH or t is EventType.JOB_REFRESH:
            self.job_events += 1
            if specific:
                if ident not in self.recent_jobs:
                    self.recent_jobs.append(ident)
                if t is EventType.SINGLE_JOB_REFRESH:  # the common case: _bump inlined
                    refreshes = self.job_refreshes
                    refreshes[ident] += 1
                    if len(refreshes) > 2 * self._MAX_IDS:
                        _forget_oldest(refreshes, self._MAX_IDS)
        elif t is EventType.LOG_REFRESH or t is EventType.JOB_LOG_REFRESH:
            if t is EventType.LOG_REFRESH:
                self.job_events += 1
            if specific:
                _bump(self.log_lines, ident, self._MAX_IDS)
        elif t is EventType.QUEUE_REFRESH or t is EventType.SINGLE_QUEUE_REFRESH:
            if specific:
                _bump(self.queue_events, ident, self._MAX_IDS)
        else:
            self.scheduler_events += 1

    def answer(self, key: QueryKey) -> str:
        """The response a fetch of ``key`` returns now, summarised in one line."""
        name = key[0]
        if name == "jobs/table":
            jobs = ", ".join(reversed(self.recent_jobs)) or "no jobs yet"
            return f"latest: {jobs}"
        if name == "jobs/stats":
            return f"{self.job_events} job events, {sum(self.log_lines.values())} log lines"
        if name == "queues/table":
            return ", ".join(sorted(self.queue_events)[:6]) or "no queues yet"
        if name == "queues/stats":
            busiest = ", ".join(f"{q}:{n}" for q, n in self.queue_events.most_common(4))
            return f"{busiest or 'no queue events'}; {self.scheduler_events} scheduler events"
        if name == "jobs/single":
            return f"job {key[1]}: updated {self.job_refreshes[key[1]]}x"
        if name == "jobs/logs":
            return f"{self.log_lines[key[1]]} log lines"
        return "-"


def _bump(counter: Counter[str], key: str, limit: int) -> None:
    counter[key] += 1
    if len(counter) > 2 * limit:
        _forget_oldest(counter, limit)


def _forget_oldest(counter: Counter[str], limit: int) -> None:
    """Keep the ``limit`` newest keys (amortised: done once per ``limit`` new keys)."""
    kept = list(counter.items())[-limit:]
    counter.clear()
    counter.update(dict(kept))


class Facts(Protocol):
    """What the events are applied to (each event, on the hot path)."""

    def apply(self, event: Event) -> None: ...


class QueryCache:
    """The queries in use, their fetch state, and what changed since the last look.

    Every method takes ``now`` (seconds on any monotonic clock), so tests drive time.
    Simulated (``latency`` seconds a fetch): call :meth:`tick` regularly to complete the
    fetches whose latency has elapsed, with :class:`Backend`'s answers. Real (``latency``
    None): whoever fetches reads :meth:`fetching` and calls :meth:`complete`; ``facts``
    then takes each event instead of the simulated backend.
    """

    def __init__(
        self,
        *,
        latency: float | None = 0.15,
        max_id_keys: int = 40,
        facts: Facts | None = None,
    ) -> None:
        self.latency = latency
        self.max_id_keys = max_id_keys
        self.backend = Backend()
        self.facts: Facts = facts or self.backend
        self.base: dict[QueryKey, Query] = {key: Query(key) for key in BASE_KEYS}
        # Per-id queries, least recently invalidated first (an LRU: O(1) to bump or evict).
        self.per_id: OrderedDict[QueryKey, Query] = OrderedDict()
        self._fetching: set[QueryKey] = set()
        # Keys to redraw; the caller clears it. It may name evicted keys: skip those.
        self.changed: set[QueryKey] = set()

    @property
    def queries(self) -> dict[QueryKey, Query]:
        """Every query in use: the base ones, then per-id ones from least recently used."""
        return {**self.base, **self.per_id}

    def mount(self, now: float) -> None:
        """Initial load: fetch every query, as a freshly mounted page does."""
        for query in self.base.values():
            self._start_fetch(query, now)

    def handle(self, event: Event, now: float) -> None:
        """Apply one event: update the facts, then invalidate the keys the web client would."""
        self.facts.apply(event)
        # The section 3 keys are whole keys, and no key in use extends another, so an
        # exact lookup gives the same result as a prefix match here, in O(1) per event.
        fixed, per_id = _PLAN[event.type]
        for key in fixed:
            self._invalidate_one(self.base[key], now)
        if per_id is not None:
            key = (per_id, event.id)
            query = self.per_id.get(key)
            if query is None:
                query = self._add(key)
            else:
                self.per_id.move_to_end(key)
            self._invalidate_one(query, now)

    def invalidate(self, prefix: QueryKey, now: float) -> int:
        """Invalidate every query whose key starts with ``prefix``; return how many."""
        n = len(prefix)
        matched = [q for k, q in self.queries.items() if k[:n] == prefix]
        for query in matched:
            self._invalidate_one(query, now)
        return len(matched)

    def invalidate_all(self, now: float) -> int:
        """After a reconnect or a resync: events may have been missed, so refetch everything."""
        return self.invalidate((), now)

    def tick(self, now: float) -> None:
        """Complete the fetches whose simulated latency has elapsed by ``now``."""
        latency = self.latency
        if not self._fetching or latency is None:
            return
        for key in [k for k in self._fetching if self._due(k, now, latency)]:
            query = self._get(key)
            if query is None or query.fetch_started is None:
                self._fetching.discard(key)  # evicted while fetching
                continue
            started = query.fetch_started
            self.complete(key, started, self.backend.answer(key), started + latency)

    def fetching(self) -> list[tuple[QueryKey, float]]:
        """The queries being fetched, each with when its current fetch started (a fetch
        restarted by an invalidation has a new start: the older one's answer is stale)."""
        found = []
        for key in list(self._fetching):
            query = self._get(key)
            if query is None or query.fetch_started is None:
                self._fetching.discard(key)  # evicted while fetching
            else:
                found.append((key, query.fetch_started))
        return found

    def complete(self, key: QueryKey, started: float, data: str, now: float) -> bool:
        """The fetch of ``key`` that started at ``started`` answered ``data`` at ``now``;
        False (and nothing changes) if a newer invalidation restarted it meanwhile."""
        query = self._get(key)
        if query is None or query.fetch_started != started:
            return False
        self._fetching.discard(key)
        query.status = QueryStatus.FRESH
        query.fetches += 1
        query.last_fetched = now
        query.last_duration = now - started
        query.fetch_started = None
        query.data = fit(data, MAX_DATA, pad=False)  # ids from the wire: cut, made safe
        burst = query.invalidations - query.counted
        if query.history is None:
            query.history = deque(maxlen=HISTORY)
        query.history.append(
            Fetched(query.invalidated_at if burst else None, burst, started, now, query.data)
        )
        query.counted, query.invalidated_at = query.invalidations, None
        self.changed.add(key)
        return True

    def _get(self, key: QueryKey) -> Query | None:
        return self.base.get(key) or self.per_id.get(key)

    def _due(self, key: QueryKey, now: float, latency: float) -> bool:
        query = self._get(key)
        if query is None or query.fetch_started is None:
            return True  # evicted: let tick() drop it
        return now >= query.fetch_started + latency

    def _invalidate_one(self, query: Query, now: float) -> None:
        """Per event and key: kept to attribute updates (``_start_fetch`` inlined)."""
        query.invalidations += 1
        if query.status is _FETCHING:
            query.cancelled += 1  # React Query's cancelRefetch: the newer fetch wins
        if query.invalidated_at is None:
            query.invalidated_at = now  # a burst begins
        query.status = _FETCHING
        query.fetch_started = now
        key = query.key
        self._fetching.add(key)
        self.changed.add(key)

    def _start_fetch(self, query: Query, now: float) -> None:
        query.status = QueryStatus.FETCHING
        query.fetch_started = now
        self._fetching.add(query.key)
        self.changed.add(query.key)

    def _add(self, key: QueryKey) -> Query:
        query = self.per_id[key] = Query(key)
        if len(self.per_id) > self.max_id_keys:
            self.per_id.popitem(last=False)  # least recently invalidated; tick() forgets it
        return query
