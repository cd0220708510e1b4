"""The bridge service: wiring, lifecycle, and the policies that join its parts.

A :class:`Bridge` starts the listening socket and the Redis source and stops them (1001
to every client). Its peers' callbacks go to the room for each job: how many get in
(:mod:`.doors`), who (:mod:`.admission`), plain HTTP (:mod:`.http`), each connection's
session and replay (:mod:`.session`), the fan-out (:mod:`.hub`). What is left here is
what joins them: what happens when Redis goes and comes back, and when a lagging client
catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from http import HTTPStatus

from websockets.http11 import Request, Response

from bridge.checks import split_redis_urls
from bridge.config import Settings
from bridge.core.budget import Budget
from bridge.core.journal import Journal
from bridge.core.protocol import (
    Change,
    EventType,
    ResyncReason,
    decode_payload,
    encode_redis_down,
    encode_redis_up,
    encode_resync,
)
from bridge.ops.lifecycle import until_a_stop_signal
from bridge.ops.metrics import CONTENT_TYPE, BridgeStats, Metrics, Readings, StreamReadings
from bridge.serving.admission import Admission, admit, check_request
from bridge.serving.doors import Doors
from bridge.serving.http import plain_answer
from bridge.serving.hub import Hub
from bridge.serving.listener import Listener
from bridge.serving.peer import Peer
from bridge.serving.session import Sessions
from bridge.sources.bullmq_source import StreamSource
from bridge.sources.redis_source import RedisSource
from bridge.sources.supervisor import SourceState, Supervised
from bridge.wsio.frames import text_frame
from bridge.wsio.plumbing import CLOSE_TIMEOUT, cancel_and_wait

log = logging.getLogger("bridge")

#: A client quiet for this long is pinged; one quiet for twice as long is dropped.
PING_INTERVAL = 20.0
RESYNC_SLOW_CLIENT = text_frame(encode_resync(ResyncReason.SLOW_CLIENT))
#: Client frames (and names in subscription frames) all clients together may cost, a second:
#: far above what browsers and bbb-tui send (a pong every 20 s), far below a stall.
SHARED_READ_RATE = 5000.0


REDIS_DOWN_FRAME = encode_redis_down()
#: Queues a stream-trimmed resync names at most.
MAX_NAMED = 20


class Bridge:
    """Redis pub/sub in, WebSocket broadcast out.

    ``await start()`` binds the port and starts the subscription; ``await stop()``
    closes every client with 1001 and cancels the subscription. Port 0 picks a free
    port: read it back from :attr:`port`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.journal = Journal(size=settings.replay_size, max_age=settings.replay_age)
        self.stats = BridgeStats()
        urls = split_redis_urls(settings.redis_url)
        #: Where events come from: Redis pub/sub, BullMQ's streams, or both (``--source``).
        self.sources: list[Supervised] = []
        if settings.source in ("pubsub", "both"):
            self.sources.append(
                RedisSource(
                    urls,
                    settings.prefix,
                    self._publish,
                    max_payload=settings.max_payload,
                    on_down=self._on_redis_down,
                    on_up=self._on_redis_up,
                    stall_timeout=settings.redis_timeout,
                )
            )
        self.streams: StreamSource | None = None
        if settings.source in ("bullmq", "both"):
            self.streams = StreamSource(
                urls[0],
                settings.bullmq_prefix,
                self._publish,
                max_payload=settings.max_payload,
                queues=settings.queues,
                rescan=settings.rescan,
                on_gap=self._on_stream_trimmed,
                on_down=self._on_redis_down,
                on_up=self._on_streams_up,
                stall_timeout=settings.redis_timeout,
            )
            self.sources.append(self.streams)
        self.source = self.sources[0]
        self.doors = Doors(settings.max_connections, self.stats)
        self.sessions = Sessions(
            self.hub,
            self.journal,
            self.stats,
            redis_down_for=self.redis_down_for,
            alive=lambda connection: connection in self.doors.connections,
        )
        self._listener: Listener | None = None
        #: What all clients together may make the bridge read and apply, a second.
        self._reading = Budget(SHARED_READ_RATE, 2 * SHARED_READ_RATE, time.monotonic)
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = Metrics(self.readings)

    @property
    def port(self) -> int:
        assert self._listener is not None, "start() first"
        return self._listener.port

    async def start(self) -> None:
        """Listen (raises OSError if the port is taken) and start the Redis subscription."""
        listener = Listener(
            self._new_connection, room=self.doors.room, reuse_port=self.settings.reuse_port
        )
        listener.listen(self.settings.host, self.settings.port)
        self._listener = listener
        log.info("WebSocket server listening on port %d", self.port)
        self._tasks = [
            *(asyncio.create_task(source.run(), name=source.what) for source in self.sources),
            asyncio.create_task(self._keepalive(), name="keepalive"),
        ]

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop the subscription."""
        if self._listener is not None:
            self._listener.close()
            for connection in list(self.doors.connections):
                connection.close(1001)
            if self.doors.connections:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.doors.all_gone.wait(), CLOSE_TIMEOUT + 0.5)
            for connection in list(self.doors.connections):
                connection.abort()
            self._listener = None
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM, SIGINT or SIGHUP, then shut down cleanly."""
        try:
            await until_a_stop_signal()
            log.info("Shutting down: closing %d client(s)", len(self.hub))
        finally:
            await self.stop()

    async def wait_ready(self, timeout: float) -> None:
        """Return once every source reads Redis; raise TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            for source in self.sources:
                await source.subscribed.wait()

    def redis_down_for(self) -> float | None:
        """Seconds some source has been without Redis (the longest), or None if none is."""
        down = [d for source in self.sources if (d := source.down_for) is not None]
        return max(down, default=None)

    def sources_down(self) -> int:
        """How many sources are without Redis now."""
        return sum(source.state is not SourceState.SUBSCRIBED for source in self.sources)

    def health(self) -> tuple[HTTPStatus, dict[str, str | int]]:
        """What ``GET /healthz`` answers: 200 while every source reads Redis, else 503."""
        up = not self.sources_down()
        body: dict[str, str | int] = {
            "status": "ok" if up else "degraded",
            "redis": "connected" if up else "disconnected",
            "clients": len(self.hub),
        }
        return (HTTPStatus.OK if up else HTTPStatus.SERVICE_UNAVAILABLE), body

    def readings(self) -> Readings:
        """What ``/metrics`` shows, read now."""
        hub, sources, streams = self.hub, self.sources, self.streams
        events_in: Counter[EventType] = Counter()
        dropped: Counter[str] = Counter()
        for source in sources:
            events_in.update(source.by_type)
            dropped.update(source.dropped_by)
        return Readings(
            connections=len(hub),
            lagging_clients=self.lagging_clients(),
            stats=self.stats,
            events_in=events_in,
            events_out=hub.events_out,
            deliveries=hub.deliveries,
            bytes_out=hub.bytes_out,
            dropped=dropped,
            redis_up=not self.sources_down(),
            redis_reconnects=sum(source.reconnects for source in sources),
            last_seq=self.journal.seq,
            streams=None
            if streams is None
            else StreamReadings(
                queues=len(streams.positions),
                entries={decode_payload(q): n for q, n in streams.entries.items()},
                lag=streams.lag,
            ),
        )

    def _publish(self, events: list[Change]) -> None:
        """The hot path: number and keep a batch of events, then send it to every client."""
        started = time.perf_counter()
        self.hub.broadcast(self.journal.record(events), events)
        self.metrics.broadcast_seconds.observe(time.perf_counter() - started)

    def _on_redis_down(self) -> None:
        """Tell every client that events stop until Redis is back (they show it): once,
        when the first source loses it."""
        if self.sources_down() == 1:
            self.hub.broadcast([REDIS_DOWN_FRAME])

    def _on_redis_up(self, down_for: float, reconnect: bool) -> None:
        """Subscribed: after a loss, or after starting without Redis while clients waited."""
        if reconnect or len(self.hub):
            self._on_redis_gap(down_for)

    def _on_streams_up(self, down_for: float, reconnect: bool) -> None:
        """The streams read on from where they were: nothing was missed, no refetch. Once
        every source is back, clients are told so (a pub/sub loss gets its own resync)."""
        if not self.sources_down() and (reconnect or len(self.hub)):
            self.hub.broadcast([encode_redis_up(down_for)])

    def _on_stream_trimmed(self, queues: list[str]) -> None:
        """BullMQ trimmed (or deleted) streams past where they were read: events are gone.
        One resync for all of them, naming the first few."""
        self.journal.mark_gap(ResyncReason.STREAM_TRIMMED)
        self.stats.resyncs[ResyncReason.STREAM_TRIMMED] += len(self.hub)
        named = queues[:MAX_NAMED]
        self.hub.broadcast([encode_resync(ResyncReason.STREAM_TRIMMED, queues=named)])

    def _on_redis_gap(self, down_for: float) -> None:
        """Redis forgot what it published while we were away: every client must refetch."""
        log.info("Sending resync to %d client(s): events may have been missed", len(self.hub))
        self.journal.mark_gap()
        self.stats.resyncs[ResyncReason.REDIS_RECONNECTED] += len(self.hub)
        self.hub.broadcast(
            [encode_resync(ResyncReason.REDIS_RECONNECTED, down_seconds=round(down_for, 1))]
        )

    # -- connections --------------------------------------------------------------

    def _new_connection(self) -> Peer:
        loop = asyncio.get_running_loop()
        connection = Peer(
            self,
            max_size=self.settings.max_client_frame,
            clock=loop.time,
            max_buffer=self.settings.max_client_buffer,
            slow_timeout=self.settings.slow_client_timeout,
            max_rate=self.settings.max_client_rate,
            compression=self.settings.compression,
            shared_budget=self._reading,
        )
        self.doors.enter(connection)
        return connection

    def on_request(self, connection: Peer, request: Request) -> Response | None:
        """Plain HTTP (``/healthz``, ``/metrics``, the page), a refusal, or None: upgrade.

        Refusals come before the upgrade, so a refused client never receives a frame.
        """
        refused = check_request(request)
        if refused is None:
            answer = plain_answer(request, health=self.health, metrics=self._metrics_text)
            if answer is not None:
                return answer
            admission = admit(request, self.settings)
            if isinstance(admission, Admission):
                connection.admission = admission
                connection.expires_at = admission.expires_at
                return None
            refused = admission
        return self.doors.refuse(connection, refused)

    def _metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.render(), CONTENT_TYPE

    def on_open(self, connection: Peer, request: Request) -> None:
        self.sessions.open(connection)

    def on_message(self, connection: Peer, data: bytes) -> int:
        return self.sessions.act(connection, data)

    def on_close(self, connection: Peer) -> None:
        self.hub.leave(connection)
        log.info(
            "Client disconnected from %s (code %s; %d connected)",
            connection.peer,
            connection.close_code,
            len(self.hub),
        )

    def on_caught_up(self, connection: Peer) -> bytes:
        """What a client that fell behind (its events were skipped) receives once it catches up."""
        self.stats.resyncs[ResyncReason.SLOW_CLIENT] += 1
        return RESYNC_SLOW_CLIENT

    def lagging_clients(self) -> int:
        return sum(1 for connection in self.hub if connection.lagging)

    def forget(self, connection: Peer) -> None:
        self.doors.leave(connection)

    async def _keepalive(self) -> None:
        """One timer for all connections (not a task per connection)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL / 2)
            now = loop.time()
            for connection in list(self.doors.connections):
                connection.keepalive(now, PING_INTERVAL)
