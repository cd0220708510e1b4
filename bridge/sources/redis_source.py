"""The supervised Redis subscription: Redis pub/sub messages in, typed events out.

This is the only module on the hot path that talks to Redis (through
:mod:`bridge.sources.pubsub`, which reads in bulk). It owns the one retry loop: every lost
connection is seen here, logged, reflected in :attr:`RedisSource.state` (and so in
``/healthz``), and followed by a fresh subscription.
"""

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
from bridge.core.protocol import EventType, channel_table, decode_payload, subscription_pattern
from bridge.sources.pubsub import PatternSubscription

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


class RedisSource:
    """Subscribe to every channel under ``prefix``; hand each read's events to ``on_events``.

    :meth:`run` never returns on Redis trouble: it logs, waits (capped exponential
    backoff), reconnects and resubscribes, forever, until cancelled. A Redis silent for
    ``stall_timeout`` (no event, no answer to a PING sent halfway), or that slow to
    connect, is given up on, rather than waited on frozen.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        prefix: str,
        on_events: Callable[[list[tuple[EventType, bytes]]], None],
        *,
        max_payload: int,
        stall_timeout: float,
        backoff: Backoff | None = None,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[float, bool], None] | None = None,
    ) -> None:
        # Several URLs: Redis Cluster nodes (PUBLISH reaches every node), tried in turn.
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._node = 0
        # Called when the subscription is lost; then, when it is (first) up, with the seconds
        # it was down and whether it had been up before: whatever was published meanwhile is
        # gone (Redis pub/sub keeps nothing).
        self._on_down = on_down
        self._on_up = on_up
        self.prefix = prefix
        self.pattern = subscription_pattern(prefix)
        self._channels = channel_table(prefix)
        self._on_events = on_events
        self.max_payload = max_payload
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
        """The Redis (node) subscribed to, or tried next."""
        return self.urls[self._node]

    async def wait_subscribed(self, timeout: float) -> None:
        """Return once subscribed; raise TimeoutError after ``timeout`` seconds."""
        await asyncio.wait_for(self.subscribed.wait(), timeout)

    async def run(self) -> None:
        """Keep a subscription up until cancelled."""
        while True:
            try:
                await self._subscribe_and_read()
            except (TimeoutError, OSError) as exc:  # pubsub turns Redis errors into OSErrors
                was_up = self.state is SourceState.SUBSCRIBED
                self._set_state(SourceState.DISCONNECTED)
                delay = self._backoff.next_delay()
                reason = _describe(exc) + _tls_hint(exc, secure=self.url.startswith("rediss:"))
                if was_up:
                    log.warning("Lost Redis connection (%s); reconnecting in %.1fs", reason, delay)
                elif self._down_log.allow("down") is not None:
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

    async def _subscribe_and_read(self) -> None:
        subscription = await PatternSubscription.open(
            self.url, self.pattern, timeout=self._stall_timeout
        )
        try:
            self._backoff.reset()
            self._down_log = LogLimiter(DOWN_LOG_INTERVAL)  # the next outage is news again
            reconnect = self._ever_up
            down_for = self._set_state(SourceState.SUBSCRIBED)
            log.info(
                "Subscribed to Redis channels %s (%s) at %s%s",
                self.pattern,
                ", ".join(t.value for t in EventType),
                redact(self.url),
                f"; back after {down_for:.1f}s down" if reconnect else "",
            )
            if reconnect:
                self.reconnects += 1
            if self._on_up is not None:
                self._on_up(down_for, reconnect)
            pinged = False
            half = self._stall_timeout / 2
            while True:
                batch = await subscription.read_batch(half)
                if batch is None:
                    if pinged:
                        raise TimeoutError(f"Redis silent for {self._stall_timeout:g}s")
                    subscription.ping()
                    pinged = True
                    continue
                pinged = False
                if batch:
                    self.handle_batch(batch)
        finally:
            await subscription.close()

    def handle_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Map a batch of Redis messages to (type, payload) events, in order; pass them on at once.

        What does not map is dropped (and logged, rate-limited).
        """
        events: list[tuple[EventType, bytes]] = []
        append = events.append
        channels, limit, by_type = self._channels, self.max_payload, self.by_type
        for channel, payload in messages:
            event_type = channels.get(channel)
            if event_type is not None and len(payload) <= limit:
                append((event_type, payload))
                by_type[event_type] += 1
            elif event_type is None:
                self._drop("unknown channel", decode_payload(channel), "")
            else:
                self._drop(
                    "payload too large",
                    event_type.value,
                    f" ({len(payload)} bytes > --max-payload {limit})",
                )
        if events:
            self._on_events(events)

    def _drop(self, why: str, key: str, detail: str) -> None:
        self.dropped_by[why] += 1
        if overflow := self._log_limit.overflow():
            log.warning("Dropped %d more message(s) not reported one by one (too many)", overflow)
        suppressed = self._log_limit.allow(f"{why}:{key}")
        if suppressed is not None:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning("Dropped message: %s %r%s%s", why, key[:200], detail, more)

    @property
    def down_for(self) -> float | None:
        """Seconds without a subscription (since the start, or since it was lost), or None."""
        if self.state is SourceState.SUBSCRIBED:
            return None
        return time.monotonic() - self._down_since

    def _set_state(self, state: SourceState) -> float:
        """Change state; on subscribing, return how long it was down (else 0)."""
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
            log.info("Redis subscription down; WebSocket clients stay connected")
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
