"""The bridge connection and its reconnect policy (no Textual here).

websockets' own reconnecting iterator is not used because the UI must show the
attempt number and a countdown, and ``r`` must cut the wait short; the policy is the
shared :class:`bridge.core.backoff.Backoff` (exponential, full jitter, capped), reset once a
connection has stayed up for ``stable_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from websockets.exceptions import InvalidURI, WebSocketException

from bbb_tui.wire import Refused, WireConnection, open_connection
from bridge.checks import read_token_file
from bridge.core.backoff import Backoff
from bridge.core.protocol import ResumePoint, with_resume
from bridge.core.sanitize import fit

#: Frames larger than this close the connection (1009); the bridge sends far smaller ones.
MAX_FRAME = 16 * 1024 * 1024


class ConnState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class ConnStatus:
    """A snapshot of the connection, for display. Times are ``clock()`` values."""

    state: ConnState
    url: str
    attempt: int = 1
    connected_at: float | None = None
    retry_at: float | None = None
    error: str | None = None
    connections: int = 0  # successful connections so far; > 1 means this one is a reconnect


class BridgeClient:
    """Connect to the bridge, hand the messages of each read to ``on_frames``, reconnect forever.

    Each connection asks ``resume()`` where the last one left off, and passes it on as
    ``?since=<seq>&epoch=<epoch>`` so that the bridge replays what was missed.

    The token is :attr:`token` (change it, then :meth:`run` again after a refusal), or
    the contents of ``token_file``, read afresh before every attempt (rotated tokens).

    ``on_frames`` and ``on_status`` are plain calls made from the event loop: keep them
    cheap (append to a buffer); widgets are updated elsewhere, on a clock.
    """

    def __init__(
        self,
        url: str,
        on_frames: Callable[[list[str | bytes]], None],
        on_status: Callable[[ConnStatus], None],
        *,
        backoff: Backoff | None = None,
        resume: Callable[[], ResumePoint | None] = lambda: None,
        token: str | None = None,
        token_file: str | None = None,
        stable_after: float = 10.0,
        open_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._on_frames = on_frames
        self._on_status = on_status
        self._resume = resume  # where to resume from, asked before each connection
        self.token = token
        self.token_file = token_file
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)  # the reconnect policy
        self._stable_after = stable_after
        self._open_timeout = open_timeout
        self._clock = clock
        self._wake = asyncio.Event()
        self._connection: WireConnection | None = None
        self.status = ConnStatus(ConnState.CONNECTING, url)

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        self._on_status(self.status)

    def reconnect_now(self) -> None:
        """Drop the current connection, or cut the wait short, and connect again at once."""
        self._wake.set()
        if self._connection is not None:
            self._connection.close(1000, "reconnect requested")

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled, or until the bridge refuses for good
        (a wrong URL, token or origin); call it again to start over after that."""
        self.backoff.reset()
        self._set(state=ConnState.CONNECTING, attempt=1, retry_at=None, error=None)
        while True:
            error = await self._connect_and_read()
            if error is None:
                continue  # reconnect requested while connected: go again at once
            if self.status.state is ConnState.DISCONNECTED:
                return  # permanent error (bad URL): nothing to retry
            delay = self.backoff.next_delay()
            self._set(
                state=ConnState.RECONNECTING,
                attempt=self.backoff.attempt + 1,
                connected_at=None,
                retry_at=self._clock() + delay,
                error=error,
            )
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._set(retry_at=None)

    async def _connect_and_read(self) -> str | None:
        """One connection's life; return why it ended (None: the user asked to reconnect)."""
        self._wake.clear()
        connected_at = 0.0

        def opened() -> None:  # called as the handshake completes, before any frame
            nonlocal connected_at
            connected_at = self._clock()
            self._set(
                state=ConnState.CONNECTED,
                connected_at=connected_at,
                retry_at=None,
                error=None,
                connections=self.status.connections + 1,
            )

        try:
            token = self.token
            if self.token_file is not None:
                token = await asyncio.to_thread(read_token_file, self.token_file)
        except OSError as exc:  # the file may appear (or be fixed) later: retry
            return _describe(exc)
        try:
            connection = await open_connection(
                with_resume(self.url, self._resume()),
                self._on_frames,
                max_size=MAX_FRAME,
                open_timeout=self._open_timeout,
                on_open=opened,
                token=token,
            )
        except (InvalidURI, ValueError) as exc:
            self._set(state=ConnState.DISCONNECTED, error=_describe(exc, "invalid URL: "))
            return str(exc)
        except Refused as exc:  # retrying cannot fix a wrong token or origin
            self._set(state=ConnState.DISCONNECTED, error=_describe(exc))
            return str(exc)
        except (TimeoutError, OSError, WebSocketException) as exc:
            return _describe(exc) + _tls_hint(exc, secure=self.url.startswith("wss:"))
        self._connection = connection
        try:
            reason = await asyncio.shield(connection.closed)
        except asyncio.CancelledError:
            connection.leave()  # quitting: say so (1001) and close, rather than vanish
            raise
        finally:
            self._connection = None
            if self._clock() - connected_at >= self._stable_after:
                self.backoff.reset()
        if self._wake.is_set():
            self.backoff.reset()
            self._set(state=ConnState.CONNECTING, attempt=1, connected_at=None)
            return None
        return reason

    @property
    def stopped(self) -> bool:
        """True when :meth:`run` has returned: the bridge refused for good."""
        return self.status.state is ConnState.DISCONNECTED


def _tls_hint(exc: BaseException, *, secure: bool) -> str:
    """What a failure probably means when TLS is expected and absent, or the other way round."""
    if secure and isinstance(exc, ssl.SSLCertVerificationError):
        return ": the bridge's TLS certificate is not trusted here"
    if secure and isinstance(exc, ssl.SSLError | ConnectionResetError | ConnectionAbortedError):
        return ": TLS handshake failed; is this a plain ws:// port? (try ws://)"
    if not secure and "valid HTTP response" in str(exc):
        return ": is this a TLS port? (try wss://)"
    return ""


def _describe(exc: BaseException, what: str = "") -> str:
    """One safe line saying why a connection attempt failed (the text may come from the peer)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
    return fit(what + text, 200, pad=False)
