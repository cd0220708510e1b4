"""Sequence numbers and the replay ring: what a reconnecting client missed (pure, no I/O).

Every event the bridge broadcasts gets the next ``seq`` of this bridge run (its
``epoch``), and the last events are kept, by count and by age, so that a client that
comes back with ``?since=<seq>&epoch=<epoch>`` gets exactly what it missed. When that
is not possible (another epoch, events no longer kept, or a Redis gap since then) the
client is told to resync instead: a gap is either filled or announced, never silent.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import NamedTuple

from bridge.core.protocol import Change, ResumePoint, ResyncReason, encode_numbered_events


def new_epoch() -> str:
    """A fresh epoch: unique per bridge start, short, URL-safe."""
    return f"{int(time.time()):x}-{secrets.token_hex(4)}"


class Gap(NamedTuple):
    """Why a resume point cannot be replayed: the client must refetch everything."""

    reason: ResyncReason
    details: dict[str, object]


#: Whatever ``size`` says, the kept frames never hold more than this: 10,000 events of
#: the largest payload allowed (64 KiB) would otherwise be 640 MiB.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class Journal:
    """Numbers events and keeps the last ``size`` of them (none older than ``max_age`` s,
    and no more than ``max_bytes`` of frames).

    ``size=0`` keeps nothing: events are still numbered, and any resume point behind
    the latest event gets a :class:`Gap`.
    """

    def __init__(
        self,
        *,
        size: int,
        max_age: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        epoch: str | None = None,
    ) -> None:
        self.epoch = epoch or new_epoch()
        self.seq = 0  # the last event's number; the first event is 1
        self.size = size
        self.max_age = max_age
        self.max_bytes = max_bytes
        self._clock = clock
        self._frames: deque[bytes] = deque(maxlen=size)  # events first_seq..seq
        # (time, last seq, bytes) per batch: for max_age and max_bytes. The bytes of a
        # batch that maxlen has started to evict still count: the total is an upper bound.
        self._batches: deque[tuple[float, int, int]] = deque()
        self._bytes = 0
        #: Source gaps (a Redis reconnect, a trimmed stream), by the seq they came after.
        self._gaps: deque[tuple[int, ResyncReason]] = deque()

    @property
    def first_seq(self) -> int:
        """The oldest event still kept (``seq + 1`` when none is)."""
        return self.seq - len(self._frames) + 1

    def record(self, events: Sequence[Change]) -> list[bytes]:
        """Number, encode and keep a batch of events; return their frames, in order."""
        frames = encode_numbered_events(events, self.seq)
        self.seq += len(frames)
        if self.size:
            self._frames.extend(frames)  # maxlen drops the oldest, in C
            size = sum(map(len, frames))
            self._batches.append((self._clock(), self.seq, size))
            self._bytes += size
            self._trim()
        return frames

    def mark_gap(self, reason: ResyncReason = ResyncReason.REDIS_RECONNECTED) -> None:
        """Events after :attr:`seq` may be missing (a Redis subscription was lost, a
        stream was trimmed past where we read): resuming from before gets a resync."""
        self._gaps.append((self.seq, reason))
        self._trim()

    def check(self, point: ResumePoint) -> Gap | None:
        """Why ``point`` cannot be replayed from, or None if it can (see :meth:`take`)."""
        if point.epoch != self.epoch:
            return Gap(ResyncReason.EPOCH_CHANGED, {"epoch": self.epoch})
        if point.since > self.seq:
            return Gap(ResyncReason.UNKNOWN_SEQ, {"seq": self.seq})
        taken = self.take(point.since, max_bytes=0)
        return taken if isinstance(taken, Gap) else None

    def missed(self, point: ResumePoint) -> list[bytes] | Gap:
        """The frames after ``point``, or why they cannot be replayed."""
        return self.check(point) or self.take(point.since, max_bytes=self.max_bytes + 1)

    def take(self, after: int, max_bytes: int) -> list[bytes] | Gap:
        """The frames after seq ``after`` (of this epoch), in order: as many as fit in
        ``max_bytes`` (at least one), none when ``after`` is the latest; or the Gap that
        keeps them from being replayed. A replay takes them chunk by chunk, as the client
        drains, so it never holds more than one chunk outside the ring."""
        self._trim()
        if self._gaps and self._gaps[-1][0] >= after:
            return Gap(self._gaps[-1][1], {})
        if after + 1 < self.first_seq:
            return Gap(ResyncReason.REPLAY_UNAVAILABLE, {"oldest": self.first_seq})
        taken: list[bytes] = []
        size = 0
        for frame in islice(self._frames, after + 1 - self.first_seq, None):
            if taken and size + len(frame) > max_bytes:
                break
            taken.append(frame)
            size += len(frame)
        return taken

    def _trim(self) -> None:
        """Forget whole batches older than ``max_age`` or past ``max_bytes``, and the
        bookkeeping of events ``size`` already pushed out."""
        frames, batches, gaps = self._frames, self._batches, self._gaps
        too_old = self._clock() - self.max_age
        while batches and (batches[0][0] < too_old or self._bytes > self.max_bytes):
            _, last, size = batches.popleft()
            self._bytes -= size
            for _ in range(min(last - self.first_seq + 1, len(frames))):
                frames.popleft()
        first = self.first_seq
        while batches and batches[0][1] < first:
            self._bytes -= batches.popleft()[2]
        while gaps and gaps[0][0] < first - 1:
            gaps.popleft()
