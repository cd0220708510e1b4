"""``GET /metrics``: the bridge's counters in Prometheus text format (prometheus_client).

The hot path bumps plain ints (in the source, the hub and :class:`BridgeStats`); this
collector reads them only when Prometheus scrapes, so metrics cost the event path
nothing but those increments. The broadcast histogram is observed once per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bridge.core.protocol import EventType

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: From one small read (tens of microseconds) to a 256 KiB burst to thousands of clients.
BROADCAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


@dataclass
class BridgeStats:
    """What the bridge itself counts (the source and the hub count their own)."""

    connections_opened: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # by HTTP status
    resyncs: Counter[str] = field(default_factory=Counter)  # messages sent, by reason
    replayed: int = 0  # events replayed to reconnecting clients


@dataclass(frozen=True)
class StreamReadings:
    """What the BullMQ stream source shows (``--source bullmq`` or ``both``)."""

    queues: int
    entries: Mapping[str, int]  # by queue
    lag: float  # seconds


@dataclass(frozen=True)
class Readings:
    """Every number ``/metrics`` shows, read at scrape time (the bridge's ``readings()``)."""

    connections: int
    lagging_clients: int
    stats: BridgeStats
    events_in: Mapping[EventType, int]
    events_out: Mapping[EventType, int]
    deliveries: int
    bytes_out: int
    dropped: Mapping[str, int]
    redis_up: bool
    redis_reconnects: int
    last_seq: int
    streams: StreamReadings | None = None


class BridgeCollector(Collector):
    """Turns the readings of one bridge into Prometheus metrics, at scrape time."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        stats = now.stats
        yield GaugeMetricFamily(
            "bbb_bridge_connections", "Open WebSocket connections", value=now.connections
        )
        yield GaugeMetricFamily(
            "bbb_bridge_lagging_clients",
            "Clients over --max-client-buffer, skipped until they catch up",
            value=now.lagging_clients,
        )
        yield CounterMetricFamily(
            "bbb_bridge_connections_opened",
            "WebSocket connections accepted",
            value=stats.connections_opened,
        )
        yield _labelled(
            "bbb_bridge_refused", "Requests refused before the upgrade", "status", stats.refused
        )
        yield _labelled(
            "bbb_bridge_events_in",
            "Events received from Redis and broadcast, by type",
            "type",
            {t.value: n for t, n in now.events_in.items()},
        )
        yield _labelled(
            "bbb_bridge_events_out",
            "Events queued to clients, by type (times the clients they went to)",
            "type",
            {t.value: now.events_out.get(t, 0) for t in EventType},
        )
        yield CounterMetricFamily(
            "bbb_bridge_messages_out",
            "Messages queued to clients (events and resyncs, times clients)",
            value=now.deliveries,
        )
        yield CounterMetricFamily(
            "bbb_bridge_bytes_out",
            "Bytes of those messages queued to clients (after batching and compression)",
            value=now.bytes_out,
        )
        yield _labelled(
            "bbb_bridge_dropped", "Redis messages dropped, by reason", "reason", now.dropped
        )
        yield _labelled(
            "bbb_bridge_resyncs", "Resync messages sent, by reason", "reason", stats.resyncs
        )
        yield CounterMetricFamily(
            "bbb_bridge_replayed_events",
            "Events replayed to clients that resumed with ?since=",
            value=stats.replayed,
        )
        yield GaugeMetricFamily(
            "bbb_bridge_redis_up", "1 while subscribed to Redis", value=1 if now.redis_up else 0
        )
        yield CounterMetricFamily(
            "bbb_bridge_redis_reconnects",
            "Redis subscriptions re-established after a loss",
            value=now.redis_reconnects,
        )
        yield GaugeMetricFamily(
            "bbb_bridge_last_seq", "Sequence number of the last event", value=now.last_seq
        )
        if now.streams is not None:
            yield GaugeMetricFamily(
                "bbb_bridge_stream_queues",
                "BullMQ queues whose event streams are read",
                value=now.streams.queues,
            )
            yield _labelled(
                "bbb_bridge_stream_entries",
                "BullMQ stream entries read, by queue",
                "queue",
                now.streams.entries,
            )
            yield GaugeMetricFamily(
                "bbb_bridge_stream_lag_seconds",
                "Age of the newest entry of the last stream read when it was read",
                value=now.streams.lag,
            )


def _labelled(name: str, doc: str, label: str, counts: Mapping[Any, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], value)
    return family


class Metrics:
    """One registry per bridge (several bridges may share a process, as in the tests)."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(BridgeCollector(read))
        ProcessCollector(registry=self.registry)
        self.broadcast_seconds = Histogram(
            "bbb_bridge_broadcast_seconds",
            "Time to number, frame and queue one batch of events to every client",
            buckets=BROADCAST_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
