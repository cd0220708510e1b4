"""How a connection starts and what its client asks along the way (the protocol's side of
serving, without sockets).

- :func:`opening_frames`: the greeting, the session, and a resync when a resume point
  cannot be replayed from (pure).
- :class:`Replay`: what a resuming client missed, pulled from the journal a chunk at a
  time as the client drains (see :meth:`bridge.serving.peer.Peer.replay`), then the
  hand-over to the live broadcast, in one step.
- :func:`answer_action`: a client's subscribe/unsubscribe frame, and the answer it gets
  (pure).
- :class:`Sessions`: puts these together for each connection the bridge opens.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from bridge.core import subscriptions
from bridge.core.journal import Gap, Journal
from bridge.core.protocol import (
    GREETING,
    ControlType,
    Event,
    ResumePoint,
    encode_control,
    encode_redis_down,
    encode_resync,
    encode_session,
    event_queue,
    parse_frame,
)
from bridge.core.subscriptions import Delivery, Subscription
from bridge.ops.metrics import BridgeStats
from bridge.serving.delivery import negotiated_deflate
from bridge.serving.hub import Hub
from bridge.serving.peer import Peer
from bridge.wsio.frames import text_frame, text_frames

log = logging.getLogger("bridge")

#: A replay is written this much at a time, as the client drains.
REPLAY_CHUNK = 256 * 1024


def opening_frames(
    journal: Journal, point: ResumePoint | None, redis_down_for: float | None
) -> tuple[list[bytes], Gap | None]:
    """The first messages of a connection: the greeting, the session (where the bridge's
    numbering stands, and whether it has Redis), and, when ``point`` cannot be replayed
    from, the resync that says so (and the Gap). A point that can is replayed next."""
    frames = [GREETING, encode_session(journal.epoch, journal.seq, redis_down_for=redis_down_for)]
    gap = None if point is None else journal.check(point)
    if gap is not None:
        frames.append(encode_resync(gap.reason, **gap.details))
    return frames, gap


class Replay:
    """What a resuming client missed, a chunk at a time; caught up, it hands over.

    Call it for the next chunk (framed bytes). When the client has caught up with the
    journal (or the journal can no longer replay for it: a resync then), it calls
    ``join(last_frames, summary)`` - which must join the client to the broadcast in the
    same step, so no event falls between - and returns None.
    """

    def __init__(
        self,
        journal: Journal,
        since: int,
        subscription: Callable[[], Subscription],
        *,
        stats: BridgeStats,
        alive: Callable[[], bool],
        redis_down_for: Callable[[], float | None],
        join: Callable[[bytes, str], None],
    ) -> None:
        self._journal = journal
        self.since = self.cursor = since
        self._subscription = subscription
        self._stats = stats
        self._alive = alive
        self._redis_down_for = redis_down_for
        self._join = join
        self.sent = 0

    def __call__(self) -> bytes | None:
        if not self._alive():
            return None  # gone meanwhile
        journal, stats = self._journal, self._stats
        if self.cursor < journal.seq:
            taken = journal.take(self.cursor, REPLAY_CHUNK)
            if not isinstance(taken, Gap):
                self.cursor += len(taken)
                wanted = self._subscription()  # as it is now: it may change mid-replay
                if not wanted.everything:
                    taken = [f for f in taken if _wanted(wanted, f)]
                self.sent += len(taken)
                stats.replayed += len(taken)
                return text_frames(taken)
            stats.resyncs[taken.reason] += 1  # outrun by the ring, or a Redis gap
            last = [encode_resync(taken.reason, **taken.details)]
            summary = f"{self.sent} replayed, then resync ({taken.reason})"
        else:
            last = []
            summary = f"replayed {self.sent} missed event(s)"
        if (down_for := self._redis_down_for()) is not None:
            last.append(encode_redis_down(down_for))  # lost while this client was replaying
        self._join(text_frames(last), f"{summary} from seq {self.since}")
        return None


def _wanted(subscription: Subscription, frame: bytes) -> bool:
    """For replays (rare): whether a kept frame is one ``subscription`` wants."""
    message = parse_frame(frame)
    return isinstance(message, Event) and subscription.wants(message.type, event_queue(message))


def answer_action(before: Subscription, data: bytes) -> tuple[Subscription | None, bytes]:
    """A client's action frame: the subscription it asks for (None: unchanged) and the
    framed answer (what changed, or why not)."""
    try:
        action, types, queues = subscriptions.parse_action(data.decode(errors="replace"))
        after = before.apply(action, types, queues)
    except ValueError as exc:
        return None, text_frame(encode_control(ControlType.ERROR, reason=str(exc)))
    return after, text_frame(encode_control(ControlType.SUBSCRIBED, **after.changes(before)))


class Sessions:
    """Each opened connection's session: its first frames, then the broadcast (or first
    its replay), and the subscription changes it asks for along the way."""

    def __init__(
        self,
        hub: Hub,
        journal: Journal,
        stats: BridgeStats,
        *,
        redis_down_for: Callable[[], float | None],
        alive: Callable[[Peer], bool],
    ) -> None:
        self._hub, self._journal, self._stats = hub, journal, stats
        self._redis_down_for = redis_down_for
        self._alive = alive  # whether a connection is still there

    def open(self, connection: Peer) -> None:
        """Greeting, session, then what the client missed (or a resync), then live events.

        A replay goes out chunk by chunk as the client drains (bounded like live events),
        and the client joins the broadcast when it has caught up with the journal.
        """
        admission, hub = connection.admission, self._hub
        how = Delivery(admission.batch, negotiated_deflate(connection.protocol))
        self._stats.connections_opened += 1
        point = admission.point
        frames, gap = opening_frames(self._journal, point, self._redis_down_for())
        if gap is not None:
            self._stats.resyncs[gap.reason] += 1
        if point is None or gap is not None:
            hub.join(connection, text_frames(frames), admission.subscription, how)
            why = "" if gap is None else f"; resync ({gap.reason})"
            log.info("Client connected from %s (%d connected)%s", connection.peer, len(hub), why)
            return
        connection.write(text_frames(frames))
        connection.subscription = admission.subscription  # changed by its frames meanwhile
        replay = Replay(
            self._journal,
            point.since,
            lambda: connection.subscription,
            stats=self._stats,
            alive=lambda: self._alive(connection),
            redis_down_for=self._redis_down_for,
            join=functools.partial(self._join_after_replay, connection, how),
        )
        connection.replay(replay)

    def _join_after_replay(
        self, connection: Peer, how: Delivery, last: bytes, summary: str
    ) -> None:
        hub = self._hub
        hub.join(connection, last, connection.subscription, how)
        log.info("Client connected from %s (%d connected); %s", connection.peer, len(hub), summary)

    def act(self, connection: Peer, data: bytes) -> int:
        """A client's text frame: an action (a frame that mentions ``"action"``) changes its
        subscription and is answered; anything else is ignored. Returns the work it was
        beyond one frame's (about the names it named)."""
        if b'"action"' not in data:
            return 0
        subscription, answer = answer_action(connection.subscription, data)
        if subscription is not None:
            if connection in self._hub:
                self._hub.resubscribe(connection, subscription)
            else:  # still replaying: the replay, then the broadcast, go by it
                connection.subscription = subscription
        connection.write(answer)
        return data.count(b",")
