"""The client registry and fan-out: a batch of encoded frames in, one write per client.

Server frames are unmasked, so a batch is framed once, as one bytes object, and that
same object is written to every open client: per client, the work is one check and
one ``transport.write`` per batch, whatever the batch holds. No write waits for a
client, so a client that reads slowly delays nobody else.

Clients are grouped by what they want (their subscription) and how (batched,
compressed: :mod:`bridge.serving.delivery`): each group's bytes are built once per batch,
never per client, and a client costs nothing for an event it did not ask for.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence

from bridge.core.protocol import Change, EventType
from bridge.core.subscriptions import EVERYTHING, PLAIN, Delivery, Subscription
from bridge.serving import delivery
from bridge.serving.peer import Peer

GroupKey = tuple[Subscription, Delivery]


class Encodings:
    """The bytes of lists of frames encoded during one broadcast (or one flush of batch
    windows), shared by the groups that get the very same lists the same way.

    Keyed by the identities of the lists, so it keeps them alive: an id names one object
    only while that object lives (a freed list's id is soon another list's).
    """

    __slots__ = ("_bytes", "_kept")

    def __init__(self) -> None:
        self._bytes: dict[tuple[tuple[int, ...], Delivery], bytes] = {}
        self._kept: list[Sequence[list[bytes]]] = []

    def get(self, lists: Sequence[list[bytes]], frames: list[bytes], how: Delivery) -> bytes:
        """The bytes of ``frames`` (the frames of ``lists``, in order), sent ``how``."""
        key = (tuple(map(id, lists)), how)
        data = self._bytes.get(key)
        if data is None:
            data = self._bytes[key] = delivery.encode(frames, how)
            self._kept.append(lists)
        return data


class Group:
    """Clients that want the same events, the same way; and, if batched, what is held."""

    __slots__ = ("clients", "delivery", "hub", "key", "pending", "subscription")

    def __init__(self, hub: Hub, subscription: Subscription, how: Delivery) -> None:
        self.hub = hub
        self.subscription = subscription
        self.delivery = how
        self.key: GroupKey = (subscription, how)
        self.clients: set[Peer] = set()
        #: Held for the batch window: the lists of frames of each broadcast, as chosen
        #: (groups that chose the same lists share their encoding when the window ends).
        self.pending: list[list[bytes]] = []

    def send(self, frames: list[bytes], encodings: Encodings | None = None) -> None:
        """Events: written to every member now, or held for the batch window.

        ``encodings`` (per broadcast) shares the bytes of one list of frames between the
        groups that get that very list the same way.
        """
        if self.delivery.batch:
            if not self.pending:
                self.hub.flush_later(self)
            self.pending.append(frames)
        else:
            self._write(frames, self.delivery, encodings, (frames,))

    def send_now(self, frames: list[bytes]) -> None:
        """Control messages: after whatever was held, and never batched."""
        self.flush()
        self._write(frames, self.delivery._replace(batch=0.0))

    def flush(self, encodings: Encodings | None = None) -> None:
        """Send what the batch window held (early: a member joins or leaves, or a control)."""
        if self.pending:
            pending, self.pending = self.pending, []
            frames = [frame for chunk in pending for frame in chunk]
            self._write(frames, self.delivery, encodings, pending)

    def _write(
        self,
        frames: list[bytes],
        how: Delivery,
        encodings: Encodings | None = None,
        lists: Sequence[list[bytes]] = (),
    ) -> None:
        if encodings is None:
            data = delivery.encode(frames, how)
        else:
            data = encodings.get(lists, frames, how)
        clients = self.clients
        self.hub.deliveries += len(frames) * len(clients)
        self.hub.bytes_out += len(data) * len(clients)
        for connection in clients:
            connection.write(data)


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them."""

    def __init__(self) -> None:
        self._clients: set[Peer] = set()
        self._groups: dict[GroupKey, Group] = {}
        #: Groups that want only some queues, by queue: a batch's queue events find their
        #: groups here, instead of every group looking through its own queues.
        self._by_queue: dict[bytes, set[GroupKey]] = {}
        #: Batched groups holding events, by batch window: one timer each, and the groups
        #: that flush together share their encodings.
        self._due: dict[float, set[Group]] = {}
        self.deliveries = 0  # messages queued, times clients (for /metrics)
        self.bytes_out = 0  # bytes of those messages on the wire
        self.events_out: Counter[EventType] = Counter()  # events queued, times clients

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[Peer]:
        return iter(self._clients)

    def __contains__(self, connection: object) -> bool:
        return connection in self._clients

    def join(
        self,
        connection: Peer,
        first: bytes,
        subscription: Subscription = EVERYTHING,
        how: Delivery = PLAIN,
    ) -> None:
        """Send ``first`` (framed messages: greeting, session, replay), then every broadcast.

        Both happen in one synchronous step, so no event can overtake or repeat what
        ``first`` holds, and none falls between the two.
        """
        if first:
            connection.write(first)
        self._clients.add(connection)
        self._group(connection, subscription, how)

    def resubscribe(self, connection: Peer, subscription: Subscription) -> None:
        """From the next broadcast on, send ``connection`` what ``subscription`` wants."""
        if connection in self._clients:
            self._ungroup(connection)
            self._group(connection, subscription, connection.delivery)

    def leave(self, connection: Peer) -> None:
        if connection in self._clients:
            self._clients.discard(connection)
            self._ungroup(connection)

    def flush_later(self, group: Group) -> None:
        """``group`` holds events: flush it when its batch window ends, with the others."""
        window = group.delivery.batch
        due = self._due.get(window)
        if due is None:
            due = self._due[window] = set()
            asyncio.get_running_loop().call_later(window, self._flush_due, window)
        due.add(group)

    def _flush_due(self, window: float) -> None:
        encodings = Encodings()
        for group in self._due.pop(window, ()):
            group.flush(encodings)

    def _group(self, connection: Peer, subscription: Subscription, how: Delivery) -> None:
        key = (subscription, how)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(self, subscription, how)
            if subscription.only:
                for queue in subscription.queues:
                    self._by_queue.setdefault(queue, set()).add(key)
        group.flush()  # what it held predates this client's session: not for it
        connection.subscription, connection.delivery = subscription, how
        group.clients.add(connection)

    def _ungroup(self, connection: Peer) -> None:
        key = (connection.subscription, connection.delivery)
        group = self._groups.get(key)
        if group is not None:
            group.flush()  # held events were this client's too
            group.clients.discard(connection)
            if not group.clients:
                del self._groups[key]
                if group.subscription.only:
                    for queue in group.subscription.queues:
                        keys = self._by_queue.get(queue)
                        if keys is not None:
                            keys.discard(key)
                            if not keys:
                                del self._by_queue[queue]
                due = self._due.get(group.delivery.batch)
                if due is not None:
                    due.discard(group)

    def broadcast(self, frames: list[bytes], events: Sequence[Change] | None = None) -> None:
        """Queue a batch of UTF-8 JSON messages, in order, on every open client.

        ``events`` (what each frame was made from) lets subscriptions choose;
        without it (control messages), every client gets every frame, at once (after
        whatever a batch window held).
        """
        if not self._clients:
            return  # nobody to frame them for
        if events is None:
            for group in self._groups.values():
                group.send_now(frames)
            return
        selection = Selection(frames, events)
        hits = selection.hits(self._by_queue) if self._by_queue else {}
        encodings = Encodings()  # groups that get the same lists share their bytes
        out = self.events_out
        for key, group in self._groups.items():
            chosen, types = selection.chosen(group.subscription, hits.get(key, ()))
            if not chosen:
                continue
            for event_type, n in types.items():
                out[event_type] += n * len(group.clients)
            group.send(chosen, encodings)


class Selection:
    """Which frames of one batch each subscription wants, at a cost that follows what it
    matches rather than the number of groups: frames are indexed once per batch (queue
    events by queue), the events no queue filter can drop are chosen once per set of
    types and shared (so is their encoding: see Group.send), and a queue filter looks up
    only its own queues."""

    __slots__ = ("_by_queue", "_counts", "_events", "_frames", "_named", "_shared")

    def __init__(self, frames: list[bytes], events: Sequence[Change]) -> None:
        self._frames = frames
        self._events = events
        self._by_queue: dict[bytes, list[int]] | None = None  # events naming one queue
        self._named: set[int] = set()  # ... all of them
        self._shared: dict[frozenset[EventType], tuple[list[bytes], list[int]]] = {}
        self._counts: dict[int, Counter[EventType]] = {}  # by id() of a list kept above

    def hits(self, groups_by_queue: dict[bytes, set[GroupKey]]) -> dict[GroupKey, list[int]]:
        """The events naming one queue that each queue-filtered group wants, by group
        (indices, in order), from the hub's index: one look-up per such event."""
        self._index()
        assert self._by_queue is not None
        found: dict[GroupKey, list[int]] = {}
        for queue, indices in self._by_queue.items():
            for key in groups_by_queue.get(queue, ()):
                found.setdefault(key, []).extend(indices)
        return found

    def chosen(
        self, subscription: Subscription, hits: Sequence[int] | None = None
    ) -> tuple[list[bytes], Counter[EventType]]:
        """The frames ``subscription`` wants, in order, and how many of each type.

        For a subscription to only some queues, ``hits`` are the events naming them (see
        :meth:`hits`); without them, it looks its queues up itself.
        """
        if subscription.everything:
            return self._frames, self._count(self._frames, range(len(self._frames)))
        frames, generic = self._generic(subscription.types)
        if subscription.only and hits is not None:
            events, types = self._events, subscription.types
            named = sorted(i for i in hits if events[i][0] in types)
        else:
            named = self._named_for(subscription)
        if not named:
            return frames, self._count(frames, generic)
        indices = sorted(generic + named)
        return [self._frames[i] for i in indices], Counter(self._events[i][0] for i in indices)

    def _generic(self, types: frozenset[EventType]) -> tuple[list[bytes], list[int]]:
        """The frames of these types that name no single queue (one list per set of types)."""
        found = self._shared.get(types)
        if found is None:
            named = self._index()
            indices = [
                i for i, event in enumerate(self._events) if event[0] in types and i not in named
            ]
            frames = (
                self._frames
                if len(indices) == len(self._frames)
                else [self._frames[i] for i in indices]
            )
            found = self._shared[types] = (frames, indices)
        return found

    def _named_for(self, subscription: Subscription) -> list[int]:
        """Events naming one queue that the filter lets through (indices, in order)."""
        self._index()
        by_queue, events, types = self._by_queue, self._events, subscription.types
        if not by_queue:
            return []
        if subscription.only:
            found = [i for q in subscription.queues for i in by_queue.get(q, ())]
            return sorted(i for i in found if events[i][0] in types)
        return [
            i
            for i in sorted(self._named)
            if events[i][0] in types and events[i][2] not in subscription.queues
        ]

    def _index(self) -> set[int]:
        if self._by_queue is None:
            self._by_queue = {}
            for i, (_, _, queue, _) in enumerate(self._events):
                if queue is not None:
                    self._named.add(i)
                    self._by_queue.setdefault(queue, []).append(i)
        return self._named

    def _count(self, frames: list[bytes], indices: Sequence[int]) -> Counter[EventType]:
        counts = self._counts.get(id(frames))
        if counts is None:
            counts = self._counts[id(frames)] = Counter(self._events[i][0] for i in indices)
        return counts
