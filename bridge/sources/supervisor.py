"""What every Redis source shares: one retry loop that sees every lost connection, logs
it, reflects it in :attr:`Supervised.state` (and so in ``/healthz``), waits (capped
exponential backoff) and connects again, forever, until cancelled."""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence

from bridge.checks import redact
from bridge.core.backoff import Backoff
from bridge.core.loglimit import LogLimiter
from bridge.core.protocol import EventType

log = logging.getLogger("bridge.source")

#: While Redis is down, retry at least this often: clients get their resync within
#: about this long of Redis answering again.
RETRY_CAP = 0.5
#: While Redis stays down, say so at most this often.
DOWN_LOG_INTERVAL = 30.0


class SourceState(enum.Enum):
    CONNECTING = "connecting"
    SUBSCRIBED = "subscribed"
    DISCONNECTED = "disconnected"


class Supervised:
    """A Redis reader kept up by :meth:`run`; subclasses implement :meth:`_connect_and_read`
    (which calls :meth:`_connected` once it reads, and raises OSError or TimeoutError when
    Redis is lost). ``on_down`` is called when a connection is lost; ``on_up`` when one is
    (first) up, with the seconds it was down and whether it had been up before.
    """

    #: What a lost connection is called in the logs ("subscription", "stream reader").
    what = "connection"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        stall_timeout: float,
        backoff: Backoff | None = None,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[float, bool], None] | None = None,
    ) -> None:
        # Several URLs: Redis Cluster nodes, tried in turn.
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._node = 0
        self._on_down = on_down
        self._on_up = on_up
        self._backoff = backoff or Backoff(base=0.1, cap=RETRY_CAP)
        self._stall_timeout = stall_timeout
        self._log_limit = LogLimiter(1.0)
        self._down_log = LogLimiter(DOWN_LOG_INTERVAL)
        self.state = SourceState.CONNECTING
        self.subscribed = asyncio.Event()
        self._down_since = time.monotonic()  # down from the start, until first subscribed
        self._ever_up = False
        # For /metrics: plain ints, read at scrape time.
        self.by_type: dict[EventType, int] = dict.fromkeys(EventType, 0)
        self.dropped_by: Counter[str] = Counter()
        self.reconnects = 0

    @property
    def dropped(self) -> int:
        """Redis messages dropped so far, whatever the reason."""
        return sum(self.dropped_by.values())

    @property
    def url(self) -> str:
        """The Redis (node) read from, or tried next."""
        return self.urls[self._node]

    async def wait_subscribed(self, timeout: float) -> None:
        """Return once reading; raise TimeoutError after ``timeout`` seconds."""
        await asyncio.wait_for(self.subscribed.wait(), timeout)

    async def run(self) -> None:
        """Keep a connection up until cancelled."""
        while True:
            try:
                await self._connect_and_read()
            except (TimeoutError, OSError) as exc:  # Redis errors arrive as OSErrors
                was_up = self.state is SourceState.SUBSCRIBED
                self._set_state(SourceState.DISCONNECTED)
                delay = self._backoff.next_delay()
                reason = _describe(exc)
                if was_up:  # it worked: no hint about TLS
                    log.warning("Lost Redis connection (%s); reconnecting in %.1fs", reason, delay)
                elif self._down_log.allow("down") is not None:
                    reason += _tls_hint(exc, secure=self.url.startswith("rediss:"))
                    log.warning(
                        "Redis at %s unavailable (%s); retrying every %.1fs at most (attempt %d)",
                        redact(self.url),
                        reason,
                        self._backoff.cap,
                        self._backoff.attempt,
                    )
                if len(self.urls) > 1:
                    self._node = (self._node + 1) % len(self.urls)  # next time, the next node
                await asyncio.sleep(delay)

    async def _connect_and_read(self) -> None:
        raise NotImplementedError

    def _connected(self, doing: str) -> None:
        """Connected and reading: log what (``doing``), and tell ``on_up``."""
        self._backoff.reset()
        self._down_log = LogLimiter(DOWN_LOG_INTERVAL)  # the next outage is news again
        reconnect = self._ever_up
        down_for = self._set_state(SourceState.SUBSCRIBED)
        log.info(
            "%s at %s%s",
            doing,
            redact(self.url),
            f"; back after {down_for:.1f}s down" if reconnect else "",
        )
        if reconnect:
            self.reconnects += 1
        if self._on_up is not None:
            self._on_up(down_for, reconnect)

    def _drop(self, why: str, key: str, detail: str) -> None:
        """Count a message that does not map, and say so (a line a second per kind)."""
        self.dropped_by[why] += 1
        if overflow := self._log_limit.overflow():
            log.warning("Dropped %d more message(s) not reported one by one (too many)", overflow)
        suppressed = self._log_limit.allow(f"{why}:{key}")
        if suppressed is not None:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning("Dropped message: %s %r%s%s", why, key[:200], detail, more)

    @property
    def down_for(self) -> float | None:
        """Seconds without a connection (since the start, or since it was lost), or None."""
        if self.state is SourceState.SUBSCRIBED:
            return None
        return time.monotonic() - self._down_since

    def _set_state(self, state: SourceState) -> float:
        """Change state; on connecting, return how long it was down (else 0)."""
        if state is self.state:
            return 0.0
        was_up = self.state is SourceState.SUBSCRIBED
        self.state = state
        now = time.monotonic()
        if state is SourceState.SUBSCRIBED:
            self.subscribed.set()
            self._ever_up = True
            return now - self._down_since
        self.subscribed.clear()
        if was_up:
            self._down_since = now
            log.info("Redis %s down; WebSocket clients stay connected", self.what)
            if self._on_down is not None:
                self._on_down()
        return 0.0


def _tls_hint(exc: BaseException, *, secure: bool) -> str:
    """What a failure probably means when TLS is expected and absent, or the other way round."""
    if secure and isinstance(exc, ssl.SSLCertVerificationError):
        return "; its TLS certificate is not trusted (ssl_ca_certs=... names a private CA)"
    if secure and isinstance(exc, TimeoutError | ssl.SSLError | ConnectionResetError):
        return "; is this Redis serving TLS? rediss:// and REDIS_USE_TLS=true need a TLS port"
    if not secure and (isinstance(exc, ConnectionResetError) or "closed the conn" in str(exc)):
        return "; does this Redis want TLS? (rediss://, or REDIS_USE_TLS=true)"
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
