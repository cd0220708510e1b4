"""The bridge service: WebSocket server, ``/healthz``, the Redis source, and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.config import Settings
from bridge.hub import Hub
from bridge.protocol import GREETING
from bridge.source import RedisSource, SourceState

log = logging.getLogger("bridge")

#: Stop cleanly on these (SIGHUP: the terminal went away, e.g. a closed tmux pane).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: How long shutdown waits for clients to acknowledge the 1001 close.
CLOSE_TIMEOUT = 1.0


class Bridge:
    """Redis pub/sub in, WebSocket broadcast out.

    ``await start()`` binds the port and starts the subscription; ``await stop()``
    closes every client with 1001 and cancels the subscription. Port 0 picks a free
    port: read it back from :attr:`port`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.source = RedisSource(
            settings.redis_url,
            settings.prefix,
            self.hub.broadcast,
            max_payload=settings.max_payload,
        )
        self._server: Server | None = None
        self._source_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen (raises OSError if the port is taken) and start the Redis subscription."""
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            max_size=self.settings.max_client_frame,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,  # one encoded frame serves every client
        )
        log.info("WebSocket server listening on port %d", self.port)
        self._source_task = asyncio.create_task(self.source.run(), name="redis-source")

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop the subscription."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT + 0.5)
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._source_task

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
        body = {
            "status": "ok" if up else "degraded",
            "redis": "connected" if up else "disconnected",
            "clients": len(self.hub),
        }
        return (HTTPStatus.OK if up else HTTPStatus.SERVICE_UNAVAILABLE), body

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != "/healthz":
            return None  # carry on with the WebSocket handshake
        status, body = self.health()
        headers = Headers()
        headers["Content-Type"] = "application/json"
        headers["Cache-Control"] = "no-store"
        payload = json.dumps(body).encode()
        headers["Content-Length"] = str(len(payload))
        return Response(status.value, status.phrase, headers, payload)

    async def _handle(self, connection: ServerConnection) -> None:
        peer = _peer(connection)
        self.hub.join(connection, GREETING)
        log.info("Client connected from %s (%d connected)", peer, len(self.hub))
        try:
            # Clients have nothing to say yet: read and ignore, so pings and the
            # close handshake are processed. Frames above max_size close with 1009.
            async for _ in connection:
                pass
        except ConnectionClosed:
            pass
        finally:
            self.hub.leave(connection)
            code = connection.close_code
            log.info(
                "Client disconnected from %s (code %s; %d connected)", peer, code, len(self.hub)
            )


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
