"""One WebSocket client of the bridge: websockets' sans-I/O ServerProtocol, no task.

websockets' asyncio server gives every connection a handler task, a keepalive task,
a message assembler and the handshake's headers for its whole life: about 14.5 KiB
per idle connection here. A bridge's clients mostly sit and receive, so this keeps
only what a connection needs: the library's protocol object (handshake, framing,
ping/pong, close, size limit), the transport, and a timestamp. Keepalive is one timer
for all connections (see :meth:`Peer.keepalive`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol as TypingProtocol

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from bridge.core.budget import Budget
from bridge.core.loglimit import LogLimiter
from bridge.core.subscriptions import EVERYTHING, PLAIN
from bridge.serving.admission import Admission
from bridge.serving.http import refusal
from bridge.wsio.plumbing import CLOSE_TIMEOUT, keep_alive, pump

log = logging.getLogger("bridge.peer")

OPEN_TIMEOUT = 10.0  # a connection that has not completed its handshake by then is dropped
#: The transport's own buffer is kept this small; what does not fit waits in the
#: connection's queue of whole frames, which can be dropped (on close, or when the client
#: lags) without cutting a frame in half. So a close frame is never behind megabytes.
TRANSPORT_HIGH = 64 * 1024
#: ...and so is the kernel's (Linux would grow it to 4 MB on its own): what waits for a
#: client waits where it can be dropped whole, and a close is at most this far behind.
KERNEL_SEND_BUFFER = 256 * 1024
#: Client frames are read at most this many a second (after a burst of twice as many):
#: more wait in the client's own TCP buffer, so one client's pings or subscription
#: frames cannot take the event loop from the others. --max-client-rate closes instead.
READ_RATE = 100.0
#: An upgrade request larger than this is answered 431 (browsers send a few hundred bytes,
#: a few KiB with cookies): a handshake in progress holds at most this much.
MAX_HANDSHAKE = 16 * 1024
HEADERS_TOO_LARGE = refusal(
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large"
).serialize()
#: Bytes handed to the protocol at a time: a large read is parsed only as far as the
#: budget goes.
READ_CHUNK = 1024
#: What cannot be parsed as WebSocket or HTTP is logged at most once a second, with a count.
_protocol_errors = LogLimiter(1.0)


class Owner(TypingProtocol):
    """What a connection reports to (the bridge), in this order: ``on_request`` once, then
    ``on_open`` if it was accepted, ``on_message`` per text frame, ``on_close`` if it was
    opened, and ``forget`` last, always."""

    def on_request(self, connection: Peer, request: Request) -> Response | None:
        """The handshake request: a response refuses it (or answers plain HTTP), None accepts."""

    def on_open(self, connection: Peer, request: Request) -> None:
        """Accepted: write the first frames (greeting, session...) and join the broadcast."""

    def on_message(self, connection: Peer, data: bytes) -> int:
        """A whole text message from the client, valid UTF-8, within the read budget;
        returns the work it was beyond one frame's (in frames: the names it named)."""

    def on_close(self, connection: Peer) -> None:
        """An opened connection is gone: it gets no more broadcasts."""

    def forget(self, connection: Peer) -> None:
        """The TCP connection is gone (opened or not): drop every reference to it."""

    def on_caught_up(self, connection: Peer) -> bytes:
        """A client whose events were skipped has drained: the framed message it gets first."""
        ...


class Peer(asyncio.Protocol):
    """A client connection from accept to close; see the module docstring.

    Everything it sends goes one way: straight to the transport while that holds less
    than ``TRANSPORT_HIGH``, else into a queue of whole frames bounded by ``max_buffer``
    bytes (events, replays, pongs and control answers alike). Past the bound the client
    is lagging: its events are skipped (and it gets a ``resync`` once it has drained), or
    it is closed (1013) after ``slow_timeout``.
    """

    __slots__ = (
        "_budget",
        "_decoder",
        "_expiry",
        "_inbox",
        "_max_buffer",
        "_max_rate",
        "_owner",
        "_paused",
        "_pull",
        "_queue",
        "_queued",
        "_reading_paused",
        "_shared",
        "_slow_timeout",
        "_timer",
        "admission",
        "answered",
        "delivery",
        "expires_at",
        "lagging",
        "last_seen",
        "opened",
        "peer",
        "protocol",
        "refuse_with",
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
        max_buffer: int,
        slow_timeout: float,
        max_rate: float,
        compression: bool,
        shared_budget: Budget | None,
    ) -> None:
        self._owner = owner
        # Frames a client may send: refilled at the rate per second, up to a burst of 2x.
        # Over it: closed (1008) with --max-client-rate, else read later (backpressure).
        self._max_rate = max_rate
        rate = max_rate or READ_RATE
        self._budget = Budget(rate, 2 * rate, clock)
        self._shared = shared_budget  # what all clients together may cost
        self._max_buffer = max_buffer
        self._slow_timeout = slow_timeout
        self.lagging = False  # over the buffer bound: its events are skipped
        self.skipped = 0  # ...how many batches so far
        #: What it asked for on the upgrade (set by the owner's on_request).
        self.admission = Admission()
        self._paused = False  # the transport holds TRANSPORT_HIGH: queue what follows
        self._queue: deque[bytes] | None = None  # created when first needed
        self._queued = 0  # bytes in the queue
        # A replay in progress: called for the next chunk when there is room (None: done).
        self._pull: Callable[[], bytes | None] | None = None
        self._inbox = bytearray()  # client bytes not yet handed to the protocol
        self._reading_paused = False
        self._decoder: codecs.IncrementalDecoder | None = None  # a fragmented text message
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
        #: When (Unix time) the client's token expires: the connection is closed then (1008).
        self.expires_at: float | None = None
        self._expiry: asyncio.TimerHandle | None = None
        #: A complete HTTP answer to send at once, before reading anything (over a limit).
        self.refuse_with: bytes | None = None
        #: Answered as plain HTTP (or refused): what the client sends next is not read.
        self.answered = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.refuse_with is not None:  # answered before the request: read and drop it
            if self.refuse_with:
                self._answer(self.refuse_with)
            else:  # not even that: too many are being refused
                self.answered = True
                transport.abort()
            return
        transport.set_write_buffer_limits(high=TRANSPORT_HIGH, low=TRANSPORT_HIGH // 4)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        self.peer = _peer(transport.get_extra_info("peername"))
        self._timer = asyncio.get_running_loop().call_later(OPEN_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # dropped: a pipelined request, a body, anything after the answer
        self.last_seen = asyncio.get_running_loop().time()
        self._inbox += data
        if not self.opened:
            if len(self._inbox) > MAX_HANDSHAKE:
                self._answer(HEADERS_TOO_LARGE)  # not a handshake anyone sends
                return
            method = bytes(self._inbox[:8]).partition(b" ")[0]
            if b" " in self._inbox[:8] and method not in (b"GET", b"HEAD"):
                # websockets' parser refuses other methods' bodies without an answer:
                # the owner answers (405) from the request line alone.
                head = Request("/", Headers(), method=method.decode("latin-1"))
                response = self._owner.on_request(self, head)
                self._answer(response.serialize() if response else HEADERS_TOO_LARGE)
                return
        self._consume()

    def _consume(self) -> None:
        """Hand the client's bytes to the protocol, a chunk at a time, while the budget lasts."""
        inbox = self._inbox
        try:
            while inbox and not self.answered and not self._out_of_budget():
                chunk = bytes(inbox[:READ_CHUNK])
                del inbox[:READ_CHUNK]
                self.protocol.receive_data(chunk)
                self._handle(self.protocol.events_received())
        except Exception as exc:  # websockets rejects what it cannot parse; never a traceback
            self._broken(exc)
            return
        self._flush()
        if inbox and not self._reading_paused and self.transport is not None:
            self._reading_paused = True  # the rest waits: in its TCP buffer, not ours
            self.transport.pause_reading()
            delay = self._budget.wait()
            if self._shared is not None:  # spread the waiters out: they wake a few at a time
                delay = max(delay, self._shared.wait() * (1 + random.random()))
            asyncio.get_running_loop().call_later(max(delay, 0.001), self._read_again)

    def _read_again(self) -> None:
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()
            self._consume()

    def _out_of_budget(self) -> bool:
        """True when this client's budget, or all clients' together, is spent. A handshake
        costs none (it is bounded, one a connection): a flood never keeps newcomers out."""
        if self.protocol.state is State.CONNECTING:
            return False
        if self._budget.available() < 1:
            return True
        return self._shared is not None and self._shared.available() < 1

    def _spend(self, units: float) -> None:
        self._budget.spend(units)
        if self._shared is not None:
            self._shared.spend(units)

    def _handle(self, events: list[Request | Response | Frame]) -> None:
        for event in events:
            if isinstance(event, Request):
                self._on_request(event)
                continue
            if not isinstance(event, Frame):
                continue  # a server receives no responses
            self._spend(1)  # every frame counts: pings, pongs, fragments, closes
            if self._budget.level < 0 and self._max_rate and self.protocol.state is State.OPEN:
                log.warning(
                    "Client %s sends more than %g frames/s: closing (1008)",
                    self.peer,
                    self._max_rate,
                )
                self.protocol.send_close(1008, "too many messages")
            opcode = event.opcode
            if opcode is Opcode.TEXT or (opcode is Opcode.CONT and self._decoder is not None):
                self._on_text(event)
            # Other frames (binary, pongs) need no action: the protocol answers pings and
            # closes, and fails the connection (1009) above max_size.

    def _on_text(self, frame: Frame) -> None:
        """Check a text message is UTF-8 (RFC 6455: 1007 if not); pass whole ones on."""
        try:
            if frame.opcode is Opcode.TEXT and frame.fin:
                bytes(frame.data).decode()
            else:  # fragmented: checked as it comes, never assembled (we only read small ones)
                if frame.opcode is Opcode.TEXT:
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                assert self._decoder is not None
                self._decoder.decode(frame.data, final=frame.fin)
                if frame.fin:
                    self._decoder = None
                return
        except UnicodeDecodeError:
            self._decoder = None
            if self.protocol.state is State.OPEN:
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
            return
        if self.opened and self.protocol.state is State.OPEN:
            self._spend(self._owner.on_message(self, bytes(frame.data)))

    def _broken(self, exc: Exception) -> None:
        suppressed = _protocol_errors.allow("broken")
        if suppressed is not None:
            more = f" (+{suppressed} more since the last report)" if suppressed else ""
            log.warning("Dropped %s: %s%s", self.peer, _describe(exc), more)
        self.abort()

    def eof_received(self) -> bool | None:
        if self.answered:
            return None  # closes
        self.protocol.receive_eof()
        self._flush()
        return None

    def pause_writing(self) -> None:
        """The transport holds TRANSPORT_HIGH bytes: queue what follows. A replay waits for
        the client to drain; one that stops reading is closed like a lagging client."""
        self._paused = True
        if self._pull is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._slow_timeout, self._too_slow)

    def resume_writing(self) -> None:
        """The transport drained: move queued frames (or the replay) on, as far as they fit."""
        self._paused = False
        if self._pull is not None and self._timer is not None and not self.lagging:
            self._timer.cancel()
            self._timer = None
        self._drain()

    def _drain(self) -> None:
        """Queued frames first, then the replay's next chunk, while the transport has room."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        while not self._paused:  # transport.write() may call pause_writing() at once
            if self._queue:
                data = self._queue.popleft()
                self._queued -= len(data)
                transport.write(data)
            elif self._pull is not None:
                chunk = self._pull()
                if chunk is None:
                    self._pull = None
                elif chunk:
                    transport.write(chunk)
            else:
                break
        if not self._queue and not self._paused and self.lagging:
            self._caught_up()

    def _caught_up(self) -> None:
        skipped, self.skipped, self.lagging = self.skipped, 0, False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.info("Client %s caught up; %d batches skipped, sent resync", self.peer, skipped)
        self.write(self._owner.on_caught_up(self))

    def _lag(self) -> None:
        """Past max_buffer: skip this client's events (bounded memory), close it if it stays."""
        self.lagging, self.skipped = True, 0
        log.warning(
            "Client %s is not reading (over %d bytes behind): skipping its events; "
            "closing it in %.0fs unless it catches up",
            self.peer,
            self._max_buffer,
            self._slow_timeout,
        )
        self._timer = asyncio.get_running_loop().call_later(self._slow_timeout, self._too_slow)

    def _expired(self) -> None:
        log.info("Client %s: its token expired; closing (1008)", self.peer)
        self.close(1008, "token expired")

    def _too_slow(self) -> None:
        log.warning(
            "Client %s still not reading after %.0fs: closing (1013)", self.peer, self._slow_timeout
        )
        self.close(1013, "too slow")  # dropped after CLOSE_TIMEOUT if it never acknowledges

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if self._timer is not None:
            self._timer.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        self._queue = None
        self._pull = None
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

    @property
    def buffered(self) -> int:
        """Bytes waiting to be sent: the transport's and the queue's."""
        held = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return held + self._queued

    def write(self, data: bytes) -> None:
        """Queue whole, already framed messages (the hub's broadcast); skipped while lagging."""
        if self.lagging:
            self.skipped += 1
        elif self.protocol.state is State.OPEN and self.transport is not None:
            if not self._paused and self._pull is None and not self._queue:
                self.transport.write(data)  # the common case: nothing waits
            else:
                self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        if self._queued + len(data) > self._max_buffer:
            self._lag()
            self.skipped += 1
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(data)
        self._queued += len(data)

    def replay(self, pull: Callable[[], bytes | None]) -> None:
        """Send what ``pull()`` returns, chunk after chunk, as the client drains (a replay):
        bounded like everything else; None from ``pull`` ends it (the owner has joined the
        connection to the broadcast by then)."""
        self._pull = pull
        self._drain()

    def close(self, code: int = 1001, reason: str = "") -> None:
        """Start the closing handshake, ahead of anything queued (which is dropped); the
        connection is dropped if the client does not answer within CLOSE_TIMEOUT."""
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
        if not keep_alive(self.protocol, self.transport, idle, interval, self._flush):
            log.info("Client %s did not answer a ping for %.0fs; dropped it", self.peer, idle)

    # -- internals ----------------------------------------------------------------

    def _answer(self, data: bytes) -> None:
        """Send a complete HTTP answer and end the connection: half-close, read nothing
        more, and drop it if the client has not closed its side within CLOSE_TIMEOUT."""
        self.answered = True
        self._inbox.clear()
        if self.transport is None or self.transport.is_closing():
            return
        if self._timer is not None:
            self._timer.cancel()
        self.transport.write(data)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def _on_request(self, request: Request) -> None:
        response = self._owner.on_request(self, request)
        if response is not None:  # plain HTTP, or a refusal: answered here, not by the
            self._answer(response.serialize())  # protocol (which asserts on a pipelined one)
            return
        self.protocol.send_response(self.protocol.accept(request))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.protocol.state is State.OPEN:
            self.opened = True
            self._flush()  # the 101 goes out before anything the owner writes
            if self.expires_at is not None:
                delay = max(self.expires_at - time.time(), 0.0)
                self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)
            self._owner.on_open(self, request)
        # Else websockets refused the upgrade itself (a missing key...): the protocol closes.

    def _flush(self) -> None:
        """Send what the protocol has to send: pongs go the way of every frame (queued, or
        dropped while lagging); a close goes ahead of the queue, which it empties."""
        protocol, transport = self.protocol, self.transport
        if transport is None or transport.is_closing():
            return
        if protocol.state is State.OPEN:
            for data in protocol.data_to_send():
                self.write(data)
            return
        if self._queue:
            self._queue = None  # whole frames only: nothing half-sent is dropped
            self._queued = 0
        self._pull = None
        pump(protocol, transport, CLOSE_TIMEOUT)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]!r}" if text else type(exc).__name__


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
