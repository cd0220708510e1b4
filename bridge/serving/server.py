"""The bridge service: WebSocket server, ``/healthz``, the Redis source, and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import time
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from bridge.checks import split_redis_urls
from bridge.config import Settings
from bridge.core import subscriptions
from bridge.core.journal import Gap, Journal
from bridge.core.loglimit import LogThrottle
from bridge.core.protocol import (
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
from bridge.core.subscriptions import Delivery, parse_batch
from bridge.ops.lifecycle import STOP_SIGNALS
from bridge.ops.metrics import CONTENT_TYPE, BridgeStats, Metrics, Readings
from bridge.serving.auth import AuthError, origin_allowed, token_from, verify_token
from bridge.serving.delivery import negotiated_deflate
from bridge.serving.hub import Hub
from bridge.serving.peer import ClientConnection
from bridge.sources.redis_source import RedisSource, SourceState
from bridge.wsio.frames import text_frame, text_frames
from bridge.wsio.plumbing import CLOSE_TIMEOUT

log = logging.getLogger("bridge")

#: A client quiet for this long is pinged; one quiet for twice as long is dropped.
PING_INTERVAL = 20.0
RESYNC_SLOW_CLIENT = text_frame(encode_resync("slow-client"))
#: Headers a request may carry once: two of them is a malformed (or a smuggling) request.
SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Upgrade", "Sec-WebSocket-Key")
#: A replay is written this much at a time, as the client drains.
REPLAY_CHUNK = 256 * 1024
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
        self.metrics = Metrics(self.readings)

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
        limit = self.settings.max_connections
        if limit and len(self._connections) >= limit:  # open, opening and half-open alike
            self.stats.refused[HTTPStatus.SERVICE_UNAVAILABLE.value] += 1
            connection.refuse_with = TOO_MANY.serialize()
            suppressed = self._refusals.allow("503")
            if suppressed is not None:
                more = f" (+{suppressed} more since last report)" if suppressed else ""
                log.warning(
                    "Refused a connection: 503: --max-connections %d reached%s", limit, more
                )
            return connection
        self._connections.add(connection)
        self._all_gone.clear()
        return connection

    def on_request(self, connection: ClientConnection, request: Request) -> Response | None:
        """Answer ``/healthz`` and refuse requests as plain HTTP; None: go on to the upgrade.

        Refusals come before the upgrade, so a refused client never receives a frame.
        """
        if request.method not in ("GET", "HEAD"):
            refusal = self._refuse(
                connection, HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method[:20]!r} not allowed"
            )
            refusal.headers["Allow"] = "GET, HEAD"
            return refusal
        if duplicated := [n for n in SINGLE_HEADERS if len(request.headers.get_all(n)) > 1]:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, f"two {duplicated[0]} headers")
        if (answer := self._plain_http(request)) is not None:
            return answer
        if request.method == "HEAD":
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, "a WebSocket upgrade is a GET")
        settings = self.settings
        origin = request.headers.get("Origin")
        if settings.allowed_origins is not None and not origin_allowed(
            origin, settings.allowed_origins
        ):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, f"origin {origin!r} not allowed")
        if settings.auth_secret is not None:
            token = token_from(request.path, request.headers.get("Authorization"))
            try:
                claims = verify_token(settings.auth_secret, token)
            except AuthError as exc:
                return self._refuse(connection, HTTPStatus.UNAUTHORIZED, str(exc))
            if isinstance(expires := claims.get("exp"), int | float):
                connection.expires_at = float(expires)
        query = urlsplit(request.path).query
        try:
            parse_resume(query)
            subscriptions.parse_query(query)
            parse_batch(query)
        except ValueError as exc:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, str(exc))
        return None

    def _plain_http(self, request: Request) -> Response | None:
        """``/healthz``, ``/metrics`` and the page (GET or HEAD); None for anything else."""
        url = urlsplit(request.path)
        if url.path == "/healthz":  # open to all: says nothing a stranger could use
            status, body = self.health()
            response = _http_response(status, json.dumps(body), "application/json")
        elif url.path == "/metrics":  # counts only, like /healthz
            response = _http_response(HTTPStatus.OK, self.metrics.render().decode(), CONTENT_TYPE)
        elif url.path in ("/", "/index.html") and not _is_upgrade(request):
            response = _page_response()  # the live page; it connects back with its own token
        else:
            return None
        if request.method == "HEAD":  # the same headers (Content-Length too), no body
            response = dataclasses.replace(response, body=b"")
        return response

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
        """Greeting, session, then what the client missed (or a resync), then live events.

        A replay goes out chunk by chunk as the client drains (bounded like live events),
        and the client joins the broadcast when it has caught up with the journal.
        """
        journal = self.journal
        down_for = self.source.down_for
        frames = [GREETING, encode_session(journal.epoch, journal.seq, redis_down_for=down_for)]
        query = urlsplit(request.path).query
        point = parse_resume(query)  # both checked by on_request
        subscription = subscriptions.parse_query(query)
        how = Delivery(parse_batch(query), negotiated_deflate(connection.protocol))
        self.stats.connections_opened += 1
        gap = None if point is None else journal.check(point)
        if gap is not None:
            self.stats.resyncs[gap.reason] += 1
            frames.append(encode_resync(gap.reason, **gap.details))
        if point is None or gap is not None:
            self.hub.join(connection, text_frames(frames), subscription, how)
            why = "" if gap is None or point is None else f"; resync ({gap.reason})"
            log.info(
                "Client connected from %s (%d connected)%s", connection.peer, len(self.hub), why
            )
            return
        connection.write(text_frames(frames))
        connection.replay(Replay(self, connection, point.since, subscription, how))

    def on_message(self, connection: ClientConnection, data: bytes) -> None:
        """A client frame: a subscription change (anything else is ignored, as before)."""
        if b'"action"' not in data:
            return
        before = connection.subscription
        try:
            action, types, queues = subscriptions.parse_action(data.decode(errors="replace"))
            subscription = before.apply(action, types, queues)
        except ValueError as exc:
            connection.write(text_frame(encode_control("error", reason=str(exc))))
            return
        self.hub.resubscribe(connection, subscription)
        answer = encode_control("subscribed", **subscription.changes(before))
        connection.write(text_frame(answer))

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


class Replay:
    """What a resuming client missed, pulled from the journal a chunk at a time as it drains
    (see ClientConnection.replay); caught up, it joins the broadcast in the same step."""

    def __init__(
        self,
        bridge: Bridge,
        connection: ClientConnection,
        since: int,
        subscription: subscriptions.Subscription,
        how: Delivery,
    ) -> None:
        self.bridge, self.connection = bridge, connection
        self.since = self.cursor = since
        self.subscription, self.how = subscription, how
        self.sent = 0

    def __call__(self) -> bytes | None:
        bridge, journal = self.bridge, self.bridge.journal
        if self.connection not in bridge._connections:
            return None  # gone meanwhile
        if self.cursor < journal.seq:
            taken = journal.take(self.cursor, REPLAY_CHUNK)
            if not isinstance(taken, Gap):
                self.cursor += len(taken)
                if not self.subscription.everything:
                    taken = [f for f in taken if _wanted(self.subscription, f)]
                self.sent += len(taken)
                bridge.stats.replayed += len(taken)
                return text_frames(taken)
            bridge.stats.resyncs[taken.reason] += 1  # outrun by the ring, or a Redis gap
            last = [encode_resync(taken.reason, **taken.details)]
            how = f"{self.sent} replayed, then resync ({taken.reason})"
        else:
            last = []
            how = f"replayed {self.sent} missed event(s)"
        if (down_for := bridge.source.down_for) is not None:
            last.append(encode_redis_down(down_for))  # lost while this client was replaying
        bridge.hub.join(self.connection, text_frames(last), self.subscription, self.how)
        log.info(
            "Client connected from %s (%d connected); %s from seq %d",
            self.connection.peer,
            len(bridge.hub),
            how,
            self.since,
        )
        return None


class LoopErrors:
    """The event loop's error reports, at most a few a second with a count.

    At the open-files limit asyncio's accept loop reports every failed ``accept()``, with
    a traceback, up to a thousand times per wake-up: thousands of lines a second. Those
    become one line per second, without the traceback (the server retries by itself);
    anything else is logged as asyncio would, but no more often.
    """

    RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(self) -> None:
        self._throttle = LogThrottle(1.0, max_per_interval=5)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        message = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        suppressed = self._throttle.allow(message)
        if suppressed is None:
            return
        more = f" (+{suppressed} more since last report)" if suppressed else ""
        if isinstance(exc, OSError) and exc.errno in self.RESOURCE_ERRORS:
            log.error(
                "%s: %s; new connections wait until some close (raise the open-files "
                "limit, or set --max-connections below it)%s",
                message,
                exc.strerror,
                more,
            )
            return
        loop.default_exception_handler({**context, "message": message + more})


def _wanted(subscription: subscriptions.Subscription, frame: bytes) -> bool:
    """For replays (rare): whether a kept frame is one ``subscription`` wants."""
    message = parse_frame(frame)
    return isinstance(message, Event) and subscription.wants(message.type, message.id.encode())


@functools.cache
def _page() -> bytes:
    return resources.files("bridge.serving").joinpath("static/index.html").read_bytes()


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


#: The answer to a connection past --max-connections, sent as it is accepted.
TOO_MANY = _http_response(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
TOO_MANY.headers["Retry-After"] = "5"
