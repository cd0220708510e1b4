"""The supervised Redis subscription: Redis pub/sub messages in, typed events out.

This is the only module on the hot path that talks to Redis pub/sub (through
:mod:`bridge.sources.pubsub`, which reads in bulk); its retry loop is
:class:`~bridge.sources.supervisor.Supervised`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.core.backoff import Backoff
from bridge.core.protocol import (
    Change,
    EventType,
    channel_table,
    decode_payload,
    pubsub_change,
    subscription_pattern,
)
from bridge.sources.pubsub import PatternSubscription
from bridge.sources.supervisor import SourceState, Supervised

__all__ = ["RedisSource", "SourceState"]


class RedisSource(Supervised):
    """Subscribe to every channel under ``prefix``; hand each read's events to ``on_events``.

    A Redis silent for ``stall_timeout`` (no event, no answer to a PING sent halfway), or
    that slow to connect, is given up on, rather than waited on frozen. Whatever was
    published while the subscription was down is gone (Redis pub/sub keeps nothing).
    """

    what = "subscription"

    def __init__(
        self,
        urls: str | Sequence[str],
        prefix: str,
        on_events: Callable[[list[Change]], None],
        *,
        max_payload: int,
        stall_timeout: float,
        backoff: Backoff | None = None,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[float, bool], None] | None = None,
    ) -> None:
        super().__init__(
            urls, stall_timeout=stall_timeout, backoff=backoff, on_down=on_down, on_up=on_up
        )
        self.prefix = prefix
        self.pattern = subscription_pattern(prefix)
        self._channels = channel_table(prefix)
        self._on_events = on_events
        self.max_payload = max_payload

    async def _connect_and_read(self) -> None:
        subscription = await PatternSubscription.open(
            self.url, self.pattern, timeout=self._stall_timeout
        )
        try:
            channels = ", ".join(t.value for t in EventType)
            self._connected(f"Subscribed to Redis channels {self.pattern} ({channels})")
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
        """Map a batch of Redis messages to events, in order; pass them on at once.

        What does not map is dropped (and logged, rate-limited).
        """
        events: list[Change] = []
        append = events.append
        channels, limit, by_type = self._channels, self.max_payload, self.by_type
        for channel, payload in messages:
            event_type = channels.get(channel)
            if event_type is not None and len(payload) <= limit:
                append(pubsub_change(event_type, payload))
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
