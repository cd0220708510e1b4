"""One WebSocket client of the bridge: websockets' sans-I/O ServerProtocol, no task.

websockets' asyncio server gives every connection a handler task, a keepalive task,
a message assembler and the handshake's headers for its whole life: about 14.5 KiB
per idle connection here. A bridge's clients mostly sit and receive, so this keeps
only what a connection needs: the library's protocol object (handshake, framing,
ping/pong, close, size limit), the transport, and a timestamp. Keepalive is one timer
for all connections (see :meth:`ClientConnection.keepalive`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from bridge.delivery import PLAIN
from bridge.subscriptions import EVERYTHING

log = logging.getLogger("bridge.connection")

OPEN_TIMEOUT = 10.0  # a connection that has not completed its handshake by then is dropped
CLOSE_TIMEOUT = 1.0  # a closing handshake that takes longer is cut short


class Owner(TypingProtocol):
    """What a connection reports to (the bridge)."""

    def on_request(self, connection: ClientConnection, request: Request) -> Response | None: ...
    def on_open(self, connection: ClientConnection, request: Request) -> None: ...
    def on_close(self, connection: ClientConnection) -> None: ...
    def on_message(self, connection: ClientConnection, data: bytes) -> None: ...
    def forget(self, connection: ClientConnection) -> None: ...
    def on_caught_up(self, connection: ClientConnection) -> bytes: ...


class ClientConnection(asyncio.Protocol):
    """A client connection from accept to close; see the module docstring."""

    __slots__ = (
        "_allowance",
        "_max_buffer",
        "_max_rate",
        "_owner",
        "_slow_timeout",
        "_timer",
        "delivery",
        "last_seen",
        "opened",
        "peer",
        "protocol",
        "skipped",
        "subscription",
        "transport",
    )

    def __init__(
        self,
        owner: Owner,
        *,
        max_size: int,
        clock: Callable[[], float],
        max_buffer: int = 1024 * 1024,
        slow_timeout: float = 30.0,
        max_rate: float = 0.0,
        compression: bool = False,
    ) -> None:
        self._owner = owner
        # Frames a client may send: refilled at max_rate per second, up to a burst of 2x.
        self._max_rate = max_rate
        self._allowance = 2 * max_rate
        self._max_buffer = max_buffer
        self._slow_timeout = slow_timeout
        self.skipped = -1  # batches not sent while over the buffer bound; -1: not lagging
        # What it wants, and how (batched, compressed): the hub groups clients by both.
        self.subscription = EVERYTHING
        self.delivery = PLAIN
        # With compression allowed, clients that offer permessage-deflate get it, each
        # message compressed on its own so that one compressed copy serves them all.
        extensions = (
            [ServerPerMessageDeflateFactory(server_no_context_takeover=True)]
            if compression
            else None
        )
        self.protocol = ServerProtocol(max_size=max_size, extensions=extensions)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.opened = False
        self.last_seen = clock()
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Past max_buffer unsent bytes asyncio calls pause_writing(): the client is lagging.
        transport.set_write_buffer_limits(high=self._max_buffer, low=self._max_buffer // 4)
        self.peer = _peer(transport.get_extra_info("peername"))
        self._timer = asyncio.get_running_loop().call_later(OPEN_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        elapsed, self.last_seen = now - self.last_seen, now
        self.protocol.receive_data(data)
        frames = 0
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self._on_request(event)
            elif isinstance(event, Frame):
                frames += 1
                if event.opcode is Opcode.TEXT and event.fin and self.opened:
                    self._owner.on_message(self, bytes(event.data))
            # Other frames (binary, fragments, pongs) need no action: the protocol
            # answers pings and closes, and fails the connection (1009) above max_size.
        if frames and self._max_rate:
            self._spend(frames, elapsed)
        self._flush()

    def _spend(self, frames: int, elapsed: float) -> None:
        """Token bucket on client frames: past the rate (and burst), close with 1008."""
        self._allowance = min(self._allowance + elapsed * self._max_rate, 2 * self._max_rate)
        self._allowance -= frames
        if self._allowance < 0 and self.protocol.state is State.OPEN:
            log.warning(
                "Client %s sends more than %g frames/s: closing (1008)", self.peer, self._max_rate
            )
            self.protocol.send_close(1008, "too many messages")

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def pause_writing(self) -> None:
        """The client stopped reading: skip its events (bounded memory), close it if it stays."""
        if self.skipped < 0 and self.protocol.state is State.OPEN:
            self.skipped = 0
            log.warning(
                "Client %s is not reading (over %d bytes behind): skipping its events; "
                "closing it in %.0fs unless it catches up",
                self.peer,
                self._max_buffer,
                self._slow_timeout,
            )
            self._timer = asyncio.get_running_loop().call_later(self._slow_timeout, self._too_slow)

    def resume_writing(self) -> None:
        """The client caught up: tell it what it missed was dropped, then carry on."""
        if self.skipped >= 0:
            skipped, self.skipped = self.skipped, -1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            log.info("Client %s caught up; %d batches skipped, sent resync", self.peer, skipped)
            self.write(self._owner.on_caught_up(self))

    def _too_slow(self) -> None:
        log.warning(
            "Client %s still not reading after %.0fs: closing (1013)", self.peer, self._slow_timeout
        )
        self.close(1013, "too slow")  # dropped after CLOSE_TIMEOUT if it never acknowledges

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if self._timer is not None:
            self._timer.cancel()
        if self.opened:
            self.opened = False
            self._owner.on_close(self)
        self._owner.forget(self)

    # -- for the bridge -----------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The closing handshake's code, whoever started it (1006: there was none)."""
        protocol = self.protocol
        if protocol.close_sent is not None and protocol.close_rcvd_then_sent is not True:
            return protocol.close_sent.code  # the bridge closed it: say why (1002, 1009...)
        return protocol.close_code

    def write(self, data: bytes) -> None:
        """Queue whole, already framed messages (the hub's broadcast); skipped while lagging."""
        if self.skipped >= 0:
            self.skipped += 1
        elif self.protocol.state is State.OPEN and self.transport is not None:
            self.transport.write(data)

    def close(self, code: int = 1001, reason: str = "") -> None:
        """Start the closing handshake; the connection is dropped if it stalls."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        elif self.protocol.state is State.CONNECTING:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def keepalive(self, now: float, interval: float) -> None:
        """Called for every connection once per ``interval``: ping the quiet, drop the dead."""
        idle = now - self.last_seen
        if not keep_alive(self.protocol, self.transport, idle, interval):
            log.info("Client %s did not answer a ping for %.0fs; dropped it", self.peer, idle)

    # -- internals ----------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        response = self._owner.on_request(self, request)
        if response is None:
            response = self.protocol.accept(request)
        self.protocol.send_response(response)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.protocol.state is State.OPEN:
            self.opened = True
            self._flush()  # the 101 goes out before anything the owner writes
            self._owner.on_open(self, request)
        # A refusal (or a plain HTTP answer such as /healthz): the protocol closes.

    def _flush(self) -> None:
        pump(self.protocol, self.transport, CLOSE_TIMEOUT)


def pump(protocol: Protocol, transport: asyncio.Transport | None, close_timeout: float) -> None:
    """Write out what a sans-I/O protocol has to send, and end the TCP connection with it.

    Call after every ``receive_*()`` or ``send_*()``: an empty chunk means half-close;
    once the closing handshake is over the connection is closed, and while it is under
    way it is aborted if the peer has not finished it within ``close_timeout``.
    """
    if transport is None or transport.is_closing():
        return
    for data in protocol.data_to_send():
        if data:
            transport.write(data)
        elif transport.can_write_eof():
            transport.write_eof()
    if protocol.close_expected():
        if protocol.state is State.CLOSED:
            transport.close()
        else:
            asyncio.get_running_loop().call_later(close_timeout, transport.abort)


def keep_alive(
    protocol: Protocol, transport: asyncio.Transport | None, idle: float, interval: float
) -> bool:
    """Ping a peer quiet for ``interval``; drop one quiet for twice that (return False).

    Any data counts as a sign of life, a pong included.
    """
    if idle >= 2 * interval:
        if transport is not None:
            transport.abort()
        return False
    if idle >= interval and protocol.state is State.OPEN:
        protocol.send_ping(b"")
        pump(protocol, transport, CLOSE_TIMEOUT)
    return True


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
