"""The bridge service: wiring, lifecycle, and the policies that join its parts.

A :class:`Bridge` starts the listening socket and the Redis source, stops them (1001 to
every client), and answers its peers' callbacks: admission (:mod:`.admission`), plain
HTTP (:mod:`.http`), the opening of a connection and replays (:mod:`.session`), what
happens when Redis goes and comes back, and when a lagging client catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import resource
import time
from http import HTTPStatus

from websockets.http11 import Request, Response

from bridge.checks import split_redis_urls
from bridge.config import Settings
from bridge.core.budget import Budget
from bridge.core.journal import Journal
from bridge.core.loglimit import LogLimiter
from bridge.core.protocol import EventType, ResyncReason, encode_redis_down, encode_resync
from bridge.core.subscriptions import Delivery
from bridge.ops.lifecycle import STOP_SIGNALS, LoopErrors
from bridge.ops.metrics import CONTENT_TYPE, BridgeStats, Metrics, Readings
from bridge.serving.admission import Admission, Refused, admit, check_request
from bridge.serving.delivery import negotiated_deflate
from bridge.serving.http import TOO_MANY, plain_answer, refusal
from bridge.serving.hub import Hub
from bridge.serving.listener import Listener
from bridge.serving.peer import Peer
from bridge.serving.session import Replay, answer_action, opening_frames
from bridge.sources.redis_source import RedisSource, SourceState
from bridge.wsio.frames import text_frame, text_frames
from bridge.wsio.plumbing import CLOSE_TIMEOUT

log = logging.getLogger("bridge")

#: A client quiet for this long is pinged; one quiet for twice as long is dropped.
PING_INTERVAL = 20.0
RESYNC_SLOW_CLIENT = text_frame(encode_resync(ResyncReason.SLOW_CLIENT))
#: File descriptors kept for everything but client connections (Redis, the listening
#: sockets, logs, the process's own).
RESERVED_FILES = 64
#: Client frames (and names in subscription frames) all clients together may cost, a second:
#: far above what browsers and bbb-tui send (a pong every 20 s), far below a stall.
SHARED_READ_RATE = 5000.0
#: Connections answered 503 at once (and closing) at most; past it, closed without a word.
MAX_REFUSING = 32


def connections_the_files_allow() -> int:
    """How many connections the open-files limit leaves room for (see RESERVED_FILES)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - RESERVED_FILES - MAX_REFUSING, 8)


REDIS_DOWN_FRAME = encode_redis_down()


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
        self.source = RedisSource(
            split_redis_urls(settings.redis_url),
            settings.prefix,
            self._publish,
            max_payload=settings.max_payload,
            on_down=self._on_redis_down,
            on_up=self._on_redis_up,
            stall_timeout=settings.redis_timeout,
        )
        self._listener: Listener | None = None
        self._connections: set[Peer] = set()  # open or opening
        self._refusing: set[Peer] = set()  # answered 503, closing
        #: What all clients together may make the bridge read and apply, a second.
        self._reading = Budget(SHARED_READ_RATE, 2 * SHARED_READ_RATE, time.monotonic)
        #: Open files for clients: past it, accepting waits (see Listener).
        self._files = connections_the_files_allow()
        #: Connections (open or opening) past which new ones are refused (503).
        self.connection_limit = settings.max_connections or self._files
        self._all_gone = asyncio.Event()  # set whenever _connections is empty
        self._tasks: list[asyncio.Task[None]] = []
        self._refusals = LogLimiter(1.0)
        self.metrics = Metrics(self.readings)

    @property
    def port(self) -> int:
        assert self._listener is not None, "start() first"
        return self._listener.port

    def _room(self) -> bool:
        """Whether one more connection leaves enough open files (see RESERVED_FILES)."""
        assert self._listener is not None
        used = len(self._connections) + len(self._refusing) + self._listener.accepting
        if used < self._files:
            return True
        suppressed = self._refusals.allow("files")
        if suppressed is not None:
            log.warning(
                "%d connections: as many as the open-files limit allows; new ones wait "
                "until some close",
                used,
            )
        return False

    async def start(self) -> None:
        """Listen (raises OSError if the port is taken) and start the Redis subscription."""
        listener = Listener(
            self._new_connection, room=self._room, reuse_port=self.settings.reuse_port
        )
        listener.listen(self.settings.host, self.settings.port)
        self._listener = listener
        log.info("WebSocket server listening on port %d", self.port)
        self._tasks = [
            asyncio.create_task(self.source.run(), name="redis-source"),
            asyncio.create_task(self._keepalive(), name="keepalive"),
        ]

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop the subscription."""
        if self._listener is not None:
            self._listener.close()
            for connection in list(self._connections):
                connection.close(1001)
            if self._connections:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_gone.wait(), CLOSE_TIMEOUT + 0.5)
            for connection in list(self._connections):
                connection.abort()
            self._listener = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM, SIGINT or SIGHUP, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(LoopErrors())
        stopping = asyncio.Event()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
            log.info("Shutting down: closing %d client(s)", len(self.hub))
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            await self.stop()

    def health(self) -> tuple[HTTPStatus, dict[str, str | int]]:
        """What ``GET /healthz`` answers: 200 while subscribed to Redis, else 503."""
        up = self.source.state is SourceState.SUBSCRIBED
        body: dict[str, str | int] = {
            "status": "ok" if up else "degraded",
            "redis": "connected" if up else "disconnected",
            "clients": len(self.hub),
        }
        return (HTTPStatus.OK if up else HTTPStatus.SERVICE_UNAVAILABLE), body

    def readings(self) -> Readings:
        """What ``/metrics`` shows, read now."""
        source, hub = self.source, self.hub
        return Readings(
            connections=len(hub),
            lagging_clients=self.lagging_clients(),
            stats=self.stats,
            events_in=source.by_type,
            events_out=hub.events_out,
            deliveries=hub.deliveries,
            bytes_out=hub.bytes_out,
            dropped=source.dropped_by,
            redis_up=source.subscribed.is_set(),
            redis_reconnects=source.reconnects,
            last_seq=self.journal.seq,
        )

    def _publish(self, events: list[tuple[EventType, bytes]]) -> None:
        """The hot path: number and keep a batch of events, then send it to every client."""
        started = time.perf_counter()
        self.hub.broadcast(self.journal.record(events), events)
        self.metrics.broadcast_seconds.observe(time.perf_counter() - started)

    def _on_redis_down(self) -> None:
        """Tell every client that events stop until Redis is back (they show it)."""
        self.hub.broadcast([REDIS_DOWN_FRAME])

    def _on_redis_up(self, down_for: float, reconnect: bool) -> None:
        """Subscribed: after a loss, or after starting without Redis while clients waited."""
        if reconnect or len(self.hub):
            self._on_redis_gap(down_for)

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
        limit = self.connection_limit
        if len(self._connections) >= limit:  # open, opening and half-open alike
            self.stats.refused[HTTPStatus.SERVICE_UNAVAILABLE.value] += 1
            # A 503, while few are being refused; past that, closed without a word.
            polite = len(self._refusing) < MAX_REFUSING
            connection.refuse_with = TOO_MANY if polite else b""
            if polite:
                self._refusing.add(connection)
            suppressed = self._refusals.allow("503")
            if suppressed is not None:
                more = f" (+{suppressed} more since last report)" if suppressed else ""
                why = "--max-connections" if self.settings.max_connections else "open files"
                log.warning("Refused a connection: 503: %d open (%s)%s", limit, why, more)
            return connection
        self._connections.add(connection)
        self._all_gone.clear()
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
        return self._refuse(connection, refused)

    def _metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.render(), CONTENT_TYPE

    def _refuse(self, connection: Peer, refused: Refused) -> Response:
        status, why = refused.status, refused.why
        self.stats.refused[status.value] += 1
        suppressed = self._refusals.allow(f"{status.value}")
        if suppressed is not None:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning(
                "Refused %s: %d %s: %s%s", connection.peer, status, status.phrase, why, more
            )
        return refusal(status, why)

    def on_open(self, connection: Peer, request: Request) -> None:
        """Greeting, session, then what the client missed (or a resync), then live events.

        A replay goes out chunk by chunk as the client drains (bounded like live events),
        and the client joins the broadcast when it has caught up with the journal.
        """
        admission = connection.admission
        how = Delivery(admission.batch, negotiated_deflate(connection.protocol))
        self.stats.connections_opened += 1
        point = admission.point
        frames, gap = opening_frames(self.journal, point, self.source.down_for)
        if gap is not None:
            self.stats.resyncs[gap.reason] += 1
        if point is None or gap is not None:
            self.hub.join(connection, text_frames(frames), admission.subscription, how)
            why = "" if gap is None else f"; resync ({gap.reason})"
            log.info(
                "Client connected from %s (%d connected)%s", connection.peer, len(self.hub), why
            )
            return
        connection.write(text_frames(frames))
        connection.subscription = admission.subscription  # changed by its frames meanwhile
        join = functools.partial(self._join_after_replay, connection, how)
        replay = Replay(
            self.journal,
            point.since,
            lambda: connection.subscription,
            stats=self.stats,
            alive=lambda: connection in self._connections,
            redis_down_for=lambda: self.source.down_for,
            join=join,
        )
        connection.replay(replay)

    def _join_after_replay(
        self, connection: Peer, how: Delivery, last: bytes, summary: str
    ) -> None:
        self.hub.join(connection, last, connection.subscription, how)
        log.info(
            "Client connected from %s (%d connected); %s", connection.peer, len(self.hub), summary
        )

    def on_message(self, connection: Peer, data: bytes) -> int:
        """A client frame: a subscription change (anything else is ignored, as before)."""
        if b'"action"' not in data:
            return 0
        subscription, answer = answer_action(connection.subscription, data)
        if subscription is not None:
            if connection in self.hub:
                self.hub.resubscribe(connection, subscription)
            else:  # still replaying: the replay, then the broadcast, go by it
                connection.subscription = subscription
        connection.write(answer)
        return data.count(b",")  # about the names it named: what it cost to apply

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
        self._connections.discard(connection)
        self._refusing.discard(connection)
        if not self._connections:
            self._all_gone.set()

    async def _keepalive(self) -> None:
        """One timer for all connections (not a task per connection)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL / 2)
            now = loop.time()
            for connection in list(self._connections):
                connection.keepalive(now, PING_INTERVAL)
