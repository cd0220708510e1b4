"""``GET /metrics``: the bridge's counters in Prometheus text format (prometheus_client).

The hot path bumps plain ints (in the source, the hub and :class:`BridgeStats`); this
collector reads them only when Prometheus scrapes, so metrics cost the event path
nothing but those increments. The broadcast histogram is observed once per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bridge.core.protocol import EventType

if TYPE_CHECKING:
    from bridge.serving.server import Bridge

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


class BridgeCollector(Collector):
    """Reads a bridge's counters at scrape time."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        bridge, source, stats = self.bridge, self.bridge.source, self.bridge.stats
        yield GaugeMetricFamily(
            "bbb_bridge_connections", "Open WebSocket connections", value=len(bridge.hub)
        )
        yield GaugeMetricFamily(
            "bbb_bridge_lagging_clients",
            "Clients over --max-client-buffer, skipped until they catch up",
            value=bridge.lagging_clients(),
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
            {t.value: n for t, n in source.by_type.items()},
        )
        yield _labelled(
            "bbb_bridge_events_out",
            "Events queued to clients, by type (times the clients they went to)",
            "type",
            {t.value: bridge.hub.events_out[t] for t in EventType},
        )
        yield CounterMetricFamily(
            "bbb_bridge_messages_out",
            "Messages queued to clients (events and resyncs, times clients)",
            value=bridge.hub.deliveries,
        )
        yield CounterMetricFamily(
            "bbb_bridge_bytes_out",
            "Bytes of those messages queued to clients (after batching and compression)",
            value=bridge.hub.bytes_out,
        )
        yield _labelled(
            "bbb_bridge_dropped", "Redis messages dropped, by reason", "reason", source.dropped_by
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
            "bbb_bridge_redis_up",
            "1 while subscribed to Redis",
            value=1 if source.subscribed.is_set() else 0,
        )
        yield CounterMetricFamily(
            "bbb_bridge_redis_reconnects",
            "Redis subscriptions re-established after a loss",
            value=source.reconnects,
        )
        yield GaugeMetricFamily(
            "bbb_bridge_last_seq", "Sequence number of the last event", value=bridge.journal.seq
        )


def _labelled(name: str, doc: str, label: str, counts: dict[str, int] | Counter[int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], value)
    return family


class Metrics:
    """One registry per bridge (several bridges may share a process, as in the tests)."""

    def __init__(self, bridge: Bridge) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(BridgeCollector(bridge))
        ProcessCollector(registry=self.registry)
        self.broadcast_seconds = Histogram(
            "bbb_bridge_broadcast_seconds",
            "Time to number, frame and queue one batch of events to every client",
            buckets=BROADCAST_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
