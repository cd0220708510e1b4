"""The client registry and fan-out: a batch of encoded frames in, one write per client.

Server frames are unmasked, so a batch is framed once, as one bytes object, and that
same object is written to every open client: per client, the work is one check and
one ``transport.write`` per batch, whatever the batch holds. No write waits for a
client, so a client that reads slowly delays nobody else.

Clients are grouped by what they want (their subscription) and how (batched,
compressed: :mod:`bridge.delivery`): each group's bytes are built once per batch,
never per client, and a client costs nothing for an event it did not ask for.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from operator import itemgetter

from bridge import delivery
from bridge.connection import ClientConnection
from bridge.delivery import PLAIN, Delivery
from bridge.protocol import EventType
from bridge.subscriptions import EVERYTHING, Subscription

GroupKey = tuple[Subscription, Delivery]
_type_of = itemgetter(0)


class Group:
    """Clients that want the same events, the same way; and, if batched, what is held."""

    __slots__ = ("clients", "delivery", "hub", "pending", "subscription", "timer")

    def __init__(self, hub: Hub, subscription: Subscription, how: Delivery) -> None:
        self.hub = hub
        self.subscription = subscription
        self.delivery = how
        self.clients: set[ClientConnection] = set()
        self.pending: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    def send(self, frames: list[bytes]) -> None:
        """Events: written to every member now, or held for the batch window."""
        if self.delivery.batch:
            self.pending += frames
            if self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(self.delivery.batch, self.flush)
        else:
            self._write(frames, self.delivery)

    def send_now(self, frames: list[bytes]) -> None:
        """Control messages: after whatever was held, and never batched."""
        self.flush()
        self._write(frames, self.delivery._replace(batch=0.0))

    def flush(self) -> None:
        """Send what the batch window held (early: a member joins or leaves, or a control)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            pending, self.pending = self.pending, []
            self._write(pending, self.delivery)

    def _write(self, frames: list[bytes], how: Delivery) -> None:
        data = delivery.encode(frames, how)
        clients = self.clients
        self.hub.deliveries += len(frames) * len(clients)
        self.hub.bytes_out += len(data) * len(clients)
        for connection in clients:
            connection.write(data)


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them."""

    def __init__(self) -> None:
        self._clients: set[ClientConnection] = set()
        self._groups: dict[GroupKey, Group] = {}
        self.deliveries = 0  # messages queued, times clients (for /metrics)
        self.bytes_out = 0  # bytes of those messages on the wire
        self.events_out: Counter[EventType] = Counter()  # events queued, times clients

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ClientConnection]:
        return iter(self._clients)

    def join(
        self,
        connection: ClientConnection,
        first: bytes,
        subscription: Subscription = EVERYTHING,
        how: Delivery = PLAIN,
    ) -> None:
        """Send ``first`` (framed messages: greeting, session, replay), then every broadcast.

        Both happen in one synchronous step, so no event can overtake or repeat what
        ``first`` holds, and none falls between the two.
        """
        connection.write(first)
        self._clients.add(connection)
        self._group(connection, subscription, how)

    def resubscribe(self, connection: ClientConnection, subscription: Subscription) -> None:
        """From the next broadcast on, send ``connection`` what ``subscription`` wants."""
        if connection in self._clients:
            self._ungroup(connection)
            self._group(connection, subscription, connection.delivery)

    def leave(self, connection: ClientConnection) -> None:
        if connection in self._clients:
            self._clients.discard(connection)
            self._ungroup(connection)

    def _group(
        self, connection: ClientConnection, subscription: Subscription, how: Delivery
    ) -> None:
        key = (subscription, how)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(self, subscription, how)
        group.flush()  # what it held predates this client's session: not for it
        connection.subscription, connection.delivery = subscription, how
        group.clients.add(connection)

    def _ungroup(self, connection: ClientConnection) -> None:
        key = (connection.subscription, connection.delivery)
        group = self._groups.get(key)
        if group is not None:
            group.flush()  # held events were this client's too
            group.clients.discard(connection)
            if not group.clients:
                del self._groups[key]

    def broadcast(
        self, frames: list[bytes], events: Sequence[tuple[EventType, bytes]] | None = None
    ) -> None:
        """Queue a batch of UTF-8 JSON messages, in order, on every open client.

        ``events`` (the type and payload of each frame) lets subscriptions choose;
        without it (control messages), every client gets every frame, at once (after
        whatever a batch window held).
        """
        if not self._clients:
            return  # nobody to frame them for
        batch_types: Counter[EventType] | None = None
        out = self.events_out
        for group in self._groups.values():
            if events is None:
                group.send_now(frames)
                continue
            if group.subscription.everything:
                chosen = frames
                if batch_types is None:
                    batch_types = Counter(map(_type_of, events))
                for event_type, n in batch_types.items():
                    out[event_type] += n * len(group.clients)
            else:
                wants = group.subscription.wants
                picked = [(f, t) for f, (t, p) in zip(frames, events, strict=True) if wants(t, p)]
                if not picked:
                    continue
                chosen = [f for f, _ in picked]
                for event_type, n in Counter(t for _, t in picked).items():
                    out[event_type] += n * len(group.clients)
            group.send(chosen)
