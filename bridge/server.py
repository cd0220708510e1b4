"""The bridge service: WebSocket server, ``/healthz``, the Redis source, and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import time
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from bridge import subscriptions
from bridge.auth import AuthError, origin_allowed, token_from, verify_token
from bridge.config import Settings, split_redis_urls
from bridge.connection import ClientConnection
from bridge.delivery import Delivery, negotiated_deflate, parse_batch
from bridge.hub import Hub
from bridge.journal import Gap, Journal
from bridge.metrics import CONTENT_TYPE, BridgeStats, Metrics
from bridge.protocol import (
    GREETING,
    REDIS_RECONNECTED,
    Event,
    EventType,
    encode_control,
    encode_redis_down,
    encode_resync,
    encode_session,
    parse_frame,
    parse_resume,
)
from bridge.source import RedisSource, SourceState
from bridge.throttle import LogThrottle
from bridge.wsframes import text_frame, text_frames

log = logging.getLogger("bridge")

#: Stop cleanly on these (SIGHUP: the terminal went away, e.g. a closed tmux pane).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: How long shutdown waits for clients to acknowledge the 1001 close.
CLOSE_TIMEOUT = 1.0
#: A client quiet for this long is pinged; one quiet for twice as long is dropped.
PING_INTERVAL = 20.0
RESYNC_SLOW_CLIENT = text_frame(encode_resync("slow-client"))
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
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()  # open or opening
        self._all_gone = asyncio.Event()  # set whenever _connections is empty
        self._tasks: list[asyncio.Task[None]] = []
        self._refusals = LogThrottle(1.0)
        self.metrics = Metrics(self)  # after everything it reads

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen (raises OSError if the port is taken) and start the Redis subscription."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            self.settings.host,
            self.settings.port,
            backlog=1024,
            reuse_port=self.settings.reuse_port or None,
        )
        log.info("WebSocket server listening on port %d", self.port)
        self._tasks = [
            asyncio.create_task(self.source.run(), name="redis-source"),
            asyncio.create_task(self._keepalive(), name="keepalive"),
        ]

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop the subscription."""
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close(1001)
            if self._connections:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_gone.wait(), CLOSE_TIMEOUT + 0.5)
            for connection in list(self._connections):
                connection.abort()
            self._server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM, SIGINT or SIGHUP, then shut down cleanly."""
        loop = asyncio.get_running_loop()
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
        self.stats.resyncs[REDIS_RECONNECTED] += len(self.hub)
        self.hub.broadcast([encode_resync(REDIS_RECONNECTED, down_seconds=round(down_for, 1))])

    # -- connections --------------------------------------------------------------

    def _new_connection(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        connection = ClientConnection(
            self,
            max_size=self.settings.max_client_frame,
            clock=loop.time,
            max_buffer=self.settings.max_client_buffer,
            slow_timeout=self.settings.slow_client_timeout,
            max_rate=self.settings.max_client_rate,
            compression=self.settings.compression,
        )
        self._connections.add(connection)
        self._all_gone.clear()
        return connection

    def on_request(self, connection: ClientConnection, request: Request) -> Response | None:
        """Answer ``/healthz`` and refuse requests as plain HTTP; None: go on to the upgrade.

        Refusals come before the upgrade, so a refused client never receives a frame.
        """
        url = urlsplit(request.path)
        if url.path == "/healthz":  # open to all: says nothing a stranger could use
            status, body = self.health()
            return _http_response(status, json.dumps(body), "application/json")
        if url.path == "/metrics":  # counts only, like /healthz
            return _http_response(HTTPStatus.OK, self.metrics.render().decode(), CONTENT_TYPE)
        settings = self.settings
        origin = request.headers.get("Origin")
        if url.path in ("/", "/index.html") and not _is_upgrade(request):
            return _page_response()  # the live page; it connects back with its own token
        if settings.allowed_origins is not None and not origin_allowed(
            origin, settings.allowed_origins, request.headers.get("Host")
        ):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, f"origin {origin!r} not allowed")
        if settings.auth_secret is not None:
            token = token_from(request.path, request.headers.get("Authorization"))
            try:
                verify_token(settings.auth_secret, token)
            except AuthError as exc:
                return self._refuse(connection, HTTPStatus.UNAUTHORIZED, str(exc))
        if settings.max_connections and len(self.hub) >= settings.max_connections:
            return self._refuse(
                connection,
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many connections (--max-connections {settings.max_connections})",
            )
        try:
            parse_resume(url.query)
            subscriptions.parse_query(url.query)
            parse_batch(url.query)
        except ValueError as exc:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, str(exc))
        return None

    def _refuse(self, connection: ClientConnection, status: HTTPStatus, why: str) -> Response:
        self.stats.refused[status.value] += 1
        suppressed = self._refusals.allow(f"{status.value}")
        if suppressed is not None:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning(
                "Refused %s: %d %s: %s%s", connection.peer, status, status.phrase, why, more
            )
        response = _http_response(status, f"{why}\n")
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="bbb-bridge"'
        elif status is HTTPStatus.SERVICE_UNAVAILABLE:
            response.headers["Retry-After"] = "5"
        return response

    def on_open(self, connection: ClientConnection, request: Request) -> None:
        """Greeting, session, then what the client missed (or a resync), then live events."""
        journal = self.journal
        down_for = self.source.down_for
        frames = [GREETING, encode_session(journal.epoch, journal.seq, redis_down_for=down_for)]
        query = urlsplit(request.path).query
        point = parse_resume(query)  # both checked by on_request
        subscription = subscriptions.parse_query(query)
        resumed = ""
        if point is not None:
            missed = journal.missed(point)
            if isinstance(missed, Gap):
                self.stats.resyncs[missed.reason] += 1
                frames.append(encode_resync(missed.reason, **missed.details))
                resumed = f"; resync ({missed.reason}) instead of replay from seq {point.since}"
            else:
                if not subscription.everything:
                    missed = [f for f in missed if _wanted(subscription, f)]
                frames += missed
                self.stats.replayed += len(missed)
                resumed = f"; replayed {len(missed)} missed event(s) from seq {point.since}"
        how = Delivery(parse_batch(query), negotiated_deflate(connection.protocol))
        self.hub.join(connection, text_frames(frames), subscription, how)
        self.stats.connections_opened += 1
        log.info(
            "Client connected from %s (%d connected)%s", connection.peer, len(self.hub), resumed
        )

    def on_message(self, connection: ClientConnection, data: bytes) -> None:
        """A client frame: a subscription change (anything else is ignored, as before)."""
        if b'"action"' not in data:
            return
        try:
            action, types, queues = subscriptions.parse_action(data.decode(errors="replace"))
            subscription = connection.subscription.apply(action, types, queues)
        except ValueError as exc:
            connection.write(text_frame(encode_control("error", reason=str(exc))))
            return
        self.hub.resubscribe(connection, subscription)
        connection.write(text_frame(encode_control("subscribed", **subscription.describe())))

    def on_close(self, connection: ClientConnection) -> None:
        self.hub.leave(connection)
        log.info(
            "Client disconnected from %s (code %s; %d connected)",
            connection.peer,
            connection.close_code,
            len(self.hub),
        )

    def on_caught_up(self, connection: ClientConnection) -> bytes:
        """What a client that fell behind (its events were skipped) receives once it catches up."""
        self.stats.resyncs["slow-client"] += 1
        return RESYNC_SLOW_CLIENT

    def lagging_clients(self) -> int:
        return sum(1 for connection in self.hub if connection.skipped >= 0)

    def forget(self, connection: ClientConnection) -> None:
        self._connections.discard(connection)
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


def _wanted(subscription: subscriptions.Subscription, frame: bytes) -> bool:
    """For replays (rare): whether a kept frame is one ``subscription`` wants."""
    message = parse_frame(frame)
    return isinstance(message, Event) and subscription.wants(message.type, message.id.encode())


@functools.cache
def _page() -> bytes:
    return resources.files("bridge").joinpath("static/index.html").read_bytes()


def _page_response() -> Response:
    response = _http_response(HTTPStatus.OK, _page().decode(), "text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _is_upgrade(request: Request) -> bool:
    return request.headers.get("Upgrade", "").strip().lower() == "websocket"


def _http_response(
    status: HTTPStatus, body: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """A complete plain-HTTP answer that ends the connection."""
    payload = body.encode()
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = "no-store"
    headers["Content-Length"] = str(len(payload))
    headers["Connection"] = "close"
    return Response(status.value, status.phrase, headers, payload)
