"""The client registry and fan-out: a batch of encoded frames in, one write per client.

Server frames are unmasked and uncompressed, so a batch is framed once, as one bytes
object, and that same object is written to every open client: per client, the work
is one check and one ``transport.write`` per batch, whatever the batch holds. No
write waits for a client, so a client that reads slowly delays nobody else.

Clients with a selective subscription are grouped by it: the batch is filtered and
framed once per group, never per client, and a client is never sent (or costs
anything for) an event it did not ask for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from bridge.connection import ClientConnection
from bridge.protocol import EventType
from bridge.subscriptions import EVERYTHING, Subscription
from bridge.wsframes import text_frames


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them."""

    def __init__(self) -> None:
        self._clients: set[ClientConnection] = set()
        self._groups: dict[Subscription, set[ClientConnection]] = {}
        self.deliveries = 0  # messages queued, times clients (for /metrics)

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ClientConnection]:
        return iter(self._clients)

    def join(
        self, connection: ClientConnection, first: bytes, subscription: Subscription = EVERYTHING
    ) -> None:
        """Send ``first`` (framed messages: greeting, session, replay), then every broadcast.

        Both happen in one synchronous step, so no event can overtake or repeat what
        ``first`` holds, and none falls between the two.
        """
        connection.write(first)
        self._clients.add(connection)
        connection.subscription = subscription
        self._groups.setdefault(subscription, set()).add(connection)

    def resubscribe(self, connection: ClientConnection, subscription: Subscription) -> None:
        """From the next broadcast on, send ``connection`` what ``subscription`` wants."""
        if connection in self._clients:
            self._ungroup(connection)
            connection.subscription = subscription
            self._groups.setdefault(subscription, set()).add(connection)

    def leave(self, connection: ClientConnection) -> None:
        if connection in self._clients:
            self._clients.discard(connection)
            self._ungroup(connection)

    def _ungroup(self, connection: ClientConnection) -> None:
        group = self._groups.get(connection.subscription)
        if group is not None:
            group.discard(connection)
            if not group:
                del self._groups[connection.subscription]

    def broadcast(
        self, frames: list[bytes], events: Sequence[tuple[EventType, bytes]] | None = None
    ) -> None:
        """Queue a batch of UTF-8 JSON messages, in order, on every open client.

        ``events`` (the type and payload of each frame) lets subscriptions choose;
        without it (control messages), every client gets every frame.
        """
        if not self._clients:
            return  # nobody to frame them for
        for subscription, clients in self._groups.items():
            if events is None or subscription.everything:
                chosen = frames
            else:
                wants = subscription.wants
                chosen = [f for f, (t, p) in zip(frames, events, strict=True) if wants(t, p)]
                if not chosen:
                    continue
            data = text_frames(chosen)
            self.deliveries += len(chosen) * len(clients)
            for connection in clients:
                connection.write(data)
