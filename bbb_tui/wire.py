"""A lean WebSocket client transport: websockets' sans-I/O ``ClientProtocol`` under asyncio.

Why not ``websockets.asyncio.client``: its ``recv()`` wakes a coroutine per message,
about 16 us each on our machines, most of the TUI's budget at 20,000 messages/s.
Here the library's own protocol core parses the bytes (handshake, framing, UTF-8,
ping/pong, close, size limit), and every frame of one TCP read is handed to
``on_frames`` in one list, with no task switch per message.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from bridge.core.sanitize import fit
from bridge.wsio.frames import FrameSplitter
from bridge.wsio.plumbing import CLOSE_TIMEOUT, keep_alive, pump

#: With nothing received for this long, ping; with nothing for twice as long, give up.
IDLE_PING = 20.0
#: Under load (reads closer together than this), pause reading for as long, so the next
#: read takes many frames at once: per-read overhead, not per-frame parsing, dominates
#: at thousands of small frames a second. Adds at most this much latency; none when idle.
COALESCE = 0.004


class HandshakeFailed(ConnectionError):
    """The server did not accept the WebSocket upgrade (the message says how)."""


class Refused(HandshakeFailed):
    """The bridge said no for good (401: the token, 403: the origin): retrying will not help."""


class WireConnection(asyncio.Protocol):
    """One client connection; the messages of each network read go to ``on_frames``.

    ``opened`` resolves when the handshake succeeds (or raises why it failed);
    ``closed`` resolves with a one-line reason when the TCP connection is gone.
    """

    def __init__(
        self,
        url: str,
        on_frames: Callable[[list[str | bytes]], None],
        *,
        max_size: int,
        on_open: Callable[[], None] | None = None,
        token: str | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._token = token
        self.protocol = ClientProtocol(parse_uri(url), max_size=max_size)
        self._on_frames = on_frames
        self._on_open = on_open
        self._transport: asyncio.Transport | None = None
        self._splitter = FrameSplitter(max_size)
        self._pending = b""  # bytes of an incomplete frame
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._last_data = loop.time()
        self._keepalive: asyncio.TimerHandle | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        request = self.protocol.connect()
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self.protocol.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_data < COALESCE and self._transport is not None:
            self._transport.pause_reading()
            loop.call_later(COALESCE, self._resume_reading)
        self._last_data = now
        messages: list[str | bytes] = []
        pending = self._pending + data
        if self.protocol.state in (State.CLOSING, State.CLOSED):
            self._pending = b""  # closing (or failed): only the protocol's business now
            self._feed_protocol(pending, messages)
            return
        if self.protocol.state is State.CONNECTING:
            # The handshake response is the library's to parse; frames start after it.
            head_end = pending.find(b"\r\n\r\n")
            if head_end < 0 and len(pending) < 65536:
                self._pending = pending
                return
            head = pending if head_end < 0 else pending[: head_end + 4]
            pending = pending[len(head) :]
            self._feed_protocol(head, messages)
            if not self._open():
                self._feed_protocol(pending, messages)  # a refusal (and its body)
                pending = b""
        frames, used = self._splitter.split(pending)
        self._pending = pending[used:]
        for fast, chunk in frames:
            if fast:
                messages.append(chunk.decode("utf-8", errors="replace"))
            else:
                self._feed_protocol(chunk, messages)
                if self.protocol.state is not State.OPEN:
                    break  # failed or closing: what follows is not for us
        if messages:
            self._on_frames(messages)  # one call per network read, not per message

    def _open(self) -> bool:
        return self.protocol.state is State.OPEN

    def _feed_protocol(self, data: bytes, messages: list[str | bytes]) -> None:
        """Let websockets' protocol handle bytes: handshake, control frames, odd frames."""
        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        self._flush()  # pongs and close replies go out at once
        for event in events:
            if isinstance(event, Frame):
                self._on_data_frame(event, messages)
            elif isinstance(event, Response):
                self._on_handshake()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if self._keepalive is not None:
            self._keepalive.cancel()
        reason = self._close_reason(exc)
        if not self.opened.done():
            self.opened.set_exception(self._handshake_error() or ConnectionError(reason))
            self.opened.exception()  # retrieved: whoever waited may have timed out already
        if not self.closed.done():
            self.closed.set_result(reason)

    def _resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- control ------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the TCP connection is dropped if it stalls."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        if self._transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._transport.abort)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def leave(self) -> None:
        """Say goodbye (1001) and close without waiting for the answer: the app is quitting."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1001, "client quit")
            self._flush()
        if self._transport is not None:
            self._transport.close()  # sends what is buffered (the close frame), then FIN

    # -- internals ----------------------------------------------------------------

    def _on_data_frame(self, frame: Frame, messages: list[str | bytes]) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                data = bytes(frame.data)
                messages.append(data.decode(errors="replace") if opcode is Opcode.TEXT else data)
            else:
                self._fragment_text = opcode is Opcode.TEXT
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT and self._fragments:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                messages.append(data.decode(errors="replace") if self._fragment_text else data)

    def _on_handshake(self) -> None:
        error = self._handshake_error()
        if self.opened.done():
            return
        if error is not None:
            self.opened.set_exception(error)
        else:
            self.opened.set_result(None)
            self._schedule_keepalive()
            if self._on_open is not None:
                self._on_open()  # before the frames that came in the same read

    def _handshake_error(self) -> Exception | None:
        exc = self.protocol.handshake_exc
        if exc is None:
            return None
        if isinstance(exc, InvalidStatus):
            response = exc.response
            why = response.body.decode(errors="replace").strip() if response.body else ""
            text = fit(f"refused: HTTP {response.status_code} {why}".rstrip(), 160, pad=False)
            return Refused(text) if response.status_code in (401, 403) else HandshakeFailed(text)
        if isinstance(exc, InvalidHandshake):
            return HandshakeFailed(fit(f"not a WebSocket server: {exc}", 160, pad=False))
        return HandshakeFailed(fit(str(exc), 160, pad=False))

    def _flush(self) -> None:
        pump(self.protocol, self._transport, CLOSE_TIMEOUT)

    def _schedule_keepalive(self) -> None:
        self._keepalive = asyncio.get_running_loop().call_later(IDLE_PING, self._check_alive)

    def _check_alive(self) -> None:
        idle = asyncio.get_running_loop().time() - self._last_data
        if keep_alive(self.protocol, self._transport, idle, IDLE_PING):
            self._schedule_keepalive()

    def _close_reason(self, exc: Exception | None) -> str:
        received, sent = self.protocol.close_rcvd, self.protocol.close_sent
        if received is not None and (sent is None or self.protocol.close_rcvd_then_sent):
            why = f": {received.reason}" if received.reason else ""
            return fit(f"closed by the bridge ({received.code}{why})", 160, pad=False)
        if sent is not None and sent.code != CloseCode.NORMAL_CLOSURE:
            # We gave up on what the bridge sent (too big, not UTF-8, not WebSocket).
            return fit(f"closed: {sent.reason} ({sent.code})", 160, pad=False)
        if exc is not None:
            return fit(str(exc) or type(exc).__name__, 160, pad=False)
        return "connection closed"


async def open_connection(
    url: str,
    on_frames: Callable[[list[str | bytes]], None],
    *,
    max_size: int,
    open_timeout: float,
    on_open: Callable[[], None] | None = None,
    token: str | None = None,
) -> WireConnection:
    """Connect and complete the handshake; raise OSError/TimeoutError/HandshakeFailed."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if uri.secure else None
    async with asyncio.timeout(open_timeout):
        transport, connection = await loop.create_connection(
            lambda: WireConnection(url, on_frames, max_size=max_size, on_open=on_open, token=token),
            uri.host,
            uri.port,
            ssl=context,
            server_hostname=uri.host if context else None,
        )
        try:
            await connection.opened
        except BaseException:
            transport.abort()
            raise
    return connection
