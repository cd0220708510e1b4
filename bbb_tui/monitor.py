"""What the connection feeds, as plain Python: counters, rate, the log ring, the cache.

The connection calls :meth:`Monitor.feed_many` once per network read (a few
microseconds a frame: parse, count, append, invalidate). Nothing here touches a
widget: the app drains the new log lines and the changed cache rows on a clock, in
one batch each. Text from the wire enters the log here, and only through
:func:`bridge.core.sanitize.fit`: no line can hold a character that acts on the terminal.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from itertools import islice, repeat
from typing import NamedTuple

from bbb_tui.cache import QueryCache
from bridge.core.protocol import (
    Batch,
    Event,
    EventType,
    Greeting,
    Malformed,
    Message,
    RedisDown,
    RedisUp,
    ResumePoint,
    ResumeTracker,
    Resync,
    ResyncReason,
    Session,
    Unknown,
    parse_frame,
)
from bridge.core.sanitize import fit


class LineKind(StrEnum):
    """The log's own kinds of line, beside the eight event types (a line's kind is one or
    the other: both are strings, for the filter and the colours)."""

    UNKNOWN = "unknown"  # valid JSON of a type this client does not know
    MALFORMED = "malformed"  # not a message at all
    INFO = "info"  # what the monitor itself says (connections, resyncs, publishes)


INFO, UNKNOWN, MALFORMED = LineKind.INFO, LineKind.UNKNOWN, LineKind.MALFORMED
#: Every kind of log line, in the order filters list them.
KINDS: tuple[str, ...] = (*(t.value for t in EventType), UNKNOWN, MALFORMED, INFO)
# Padded to the common kinds' width; the rare longest one just pushes its line along.
_PADDED = {kind: kind.ljust(len("job-scheduler-refresh")) for kind in KINDS}
_MAX_VALUE = 120  # terminal cells of one data value shown in the log

#: The frame a line came in is kept with it (for Enter, y and s), as received, if it is at
#: most this long; a batch's frame is shared by its lines, and kept if it holds at most this
#: much per message. So the frames the log keeps add up to capacity x KEEP_FRAME at most,
#: whatever arrives (a frame may be 16 MiB), and they are parsed again only when opened.
KEEP_FRAME = 16 * 1024  # characters (a str holds up to 4 bytes each)
#: Seconds a greeting may wait for its session before the bridge is taken for one that
#: cannot resume (an old one: then everything is refetched after a reconnect).
SESSION_WAIT = 1.0
#: Malformed messages of one batch that get a log line each; the rest are counted.
MAX_BATCH_MALFORMED = 1000


class NotKept(NamedTuple):
    """In place of a frame too big to keep."""

    size: int  # the frame's length (bytes, or characters), per message in a batch


class InBatch(NamedTuple):
    """A line's message is number ``position`` of the batch ``frame`` (``?batch=``)."""

    frame: str | bytes
    position: int


#: What a line came in: its frame, its place in a batch, NotKept, or None (the monitor's own).
Source = str | bytes | InBatch | NotKept | None
#: One kept log line: its kind, its text, its source and when it arrived (seconds since the
#: epoch). A plain tuple: one is made per event.
Entry = tuple[str, str, Source, float]


def clean(text: str, limit: int = _MAX_VALUE) -> str:
    """Outside text as one safe line of at most ``limit`` cells (escapes visible, ``…`` cut)."""
    return fit(text, limit, pad=False)


def clock_time(wall: float, hms: str | None = None) -> str:
    """``HH:MM:SS.mmm`` local time (pass ``hms`` when the seconds part is already known)."""
    hms = hms or time.strftime("%H:%M:%S", time.localtime(wall))
    return f"{hms}.{int(wall * 1000) % 1000:03d}"


def format_data(data: dict[str, object]) -> str:
    if len(data) == 1:  # the common case: one string field
        ((key, value),) = data.items()
        if (  # printable ASCII is safe as it is, one cell a character
            type(value) is str
            and value.isascii()
            and len(value) <= _MAX_VALUE
            and value.isprintable()
            and key.isascii()
            and len(key) <= 40
            and key.isprintable()
        ):
            return f"{key}={value}"
    return "  ".join(
        f"{clean(str(k), 40)}={clean(v if isinstance(v, str) else json.dumps(v))}"
        for k, v in data.items()
    )


def _in_batch(source: Source, count: int) -> Iterable[Source]:
    """The sources of a batch's messages: each its place in the frame, if it is kept."""
    if isinstance(source, str | bytes) and len(source) <= KEEP_FRAME * count:
        return (InBatch(source, position) for position in range(count))
    size = source.size if isinstance(source, NotKept) else len(source or "")
    return repeat(NotKept(size // max(count, 1)), count)


class RateMeter:
    """Counts per whole second over a sliding window: the rate and a sparkline's history."""

    def __init__(self, window: int = 60) -> None:
        self.window = window
        self._second = 0
        self._count = 0
        self._history: deque[int] = deque([0] * window, maxlen=window)

    def add(self, now: float, n: int = 1) -> None:
        second = int(now)
        if second != self._second:
            self._roll(second)
        self._count += n

    def _roll(self, second: int) -> None:
        gap = min(max(second - self._second, 0), self.window)
        if gap:
            self._history.append(self._count)
            self._history.extend([0] * (gap - 1))
            self._count = 0
        self._second = second

    def rate(self, now: float) -> float:
        """Messages per second over the last complete second."""
        self.add(now, 0)
        return float(self._history[-1])

    def history(self, now: float) -> list[int]:
        self.add(now, 0)
        return list(self._history)


class Monitor:
    """Counters, the bounded log ring with pause and filter, and the simulated cache."""

    def __init__(
        self,
        cache: QueryCache,
        *,
        capacity: int = 2000,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.capacity = capacity
        self._clock = clock
        self._wallclock = wallclock
        self.received = 0  # frames, all kinds
        self.events = 0  # well-formed events of the eight types
        self.resyncs = 0  # gaps the bridge announced
        self.replayed = 0  # missed events the bridge replayed after a reconnect
        # Where this client stands in the bridge's numbering, to resume from after a drop.
        self.position = ResumeTracker()
        self._reconnected = False  # connected again: a session (resume) or a refetch is due
        self._greeted = False  # a greeting came, and no session yet
        self._greeted_at = 0.0
        self._events_at_greeting = 0
        self._replay: tuple[int, int] | None = None  # (first, last) seq being replayed
        #: When (``clock()``) the bridge lost Redis, while it says so; None while it has it.
        self.redis_down_since: float | None = None
        self.by_type: Counter[str] = Counter()
        self.rate = RateMeter()
        self.entries: deque[Entry] = deque(maxlen=capacity)
        self._new = 0  # entries appended since the last drain
        self.paused = False
        self.held = 0  # entries that arrived while paused
        self.shown: frozenset[str] = frozenset(KINDS)
        self._second = -1
        self._stamp = ""

    # -- fed by the connection, one network read at a time --------------------

    def feed(self, frame: str | bytes) -> None:
        """Take one frame off the wire."""
        self.feed_many((frame,))

    def feed_many(self, frames: Sequence[str | bytes]) -> None:
        """Take the frames of one network read (the hot path: a few microseconds each)."""
        now = self._clock()
        self.received += len(frames)
        self.rate.add(now, len(frames))
        if max(map(len, frames), default=0) <= KEEP_FRAME:  # the common case
            self._take(zip(frames, map(parse_frame, frames), strict=True), now)
        else:  # a frame too big to keep whole; a batch's is judged per message (_in_batch)
            messages = list(map(parse_frame, frames))
            sources = [
                f if len(f) <= KEEP_FRAME or type(m) is Batch else NotKept(len(f))
                for f, m in zip(frames, messages, strict=True)
            ]
            self._take(zip(sources, messages, strict=True), now)
        if self._greeted or self._replay is not None:
            self._after_greeting()

    def _take(self, items: Iterable[tuple[Source, Message]], now: float) -> None:
        """Each message, with the source its line keeps."""
        wall = self._wallclock()
        stamp = self._timestamp(wall)
        append = self.entries.append
        handle = self.cache.handle
        by_type = self.by_type
        events = 0
        last: Event | None = None
        for source, message in items:
            if type(message) is Event:
                kind = message.type  # a StrEnum: hashes and compares as its str value
                by_type[kind] += 1
                append(
                    (kind, f"{stamp}  {_PADDED[kind]}  {format_data(message.data)}", source, wall)
                )
                handle(message, now)
                events += 1
                last = message
            elif type(message) is Batch:  # ?batch=: its messages, each as if framed alone
                count = len(message.messages)
                self.received += count - 1  # the frame was counted once already
                self.rate.add(now, count - 1)
                self._take(self._batch_items(message, source), now)
                last = None  # the batch's own events set last_seq
            else:
                self._other(message, source)
        self.events += events
        self._new += events
        if self.paused:
            self.held += events
        if last is not None and last.seq is not None:
            self.position.advance(last.seq)

    def _batch_items(self, batch: Batch, source: Source) -> Iterable[tuple[Source, Message]]:
        """A batch's messages with their sources; past MAX_BATCH_MALFORMED malformed ones,
        the rest are counted, not logged (a line costs ~10 us: a hostile batch of a
        million bad items must not take seconds)."""
        items = zip(_in_batch(source, len(batch.messages)), batch.messages, strict=True)
        bad = sum(type(message) is Malformed for message in batch.messages)
        if bad <= MAX_BATCH_MALFORMED:
            return items
        kept, seen = [], 0
        for item in items:
            if type(item[1]) is Malformed:
                seen += 1
                if seen > MAX_BATCH_MALFORMED:
                    continue
            kept.append(item)
        unlogged = bad - MAX_BATCH_MALFORMED
        self.by_type[MALFORMED] += unlogged
        self._append(MALFORMED, f"{unlogged:,} more malformed messages in this batch, not shown")
        return kept

    def _other(self, message: Message, source: Source = None) -> None:
        if isinstance(message, Greeting):
            self._greeted, self._greeted_at = True, self._clock()
            self._events_at_greeting = self.events
            self._append(INFO, "greeting from the bridge (connected)")
        elif isinstance(message, Session):
            self._on_session(message)
        elif isinstance(message, RedisDown):
            self.redis_down_since = self._clock() - message.down_for
            self._append(INFO, "the bridge lost Redis: no events until it is back")
        elif isinstance(message, RedisUp):
            self.redis_down_since = None
            self._append(
                INFO, f"the bridge has Redis back after {message.down_for:.1f}s: nothing missed"
            )
        elif isinstance(message, Resync):
            self._replay = None  # what was missed is not replayed: refetch instead
            self.resyncs += 1
            if message.reason == ResyncReason.REDIS_RECONNECTED and "down_seconds" in message.data:
                self.redis_down_since = None  # back (a resume past an old outage says no more)
            count = self.cache.invalidate_all(self._clock())
            self._append(
                INFO,
                f"resync from the bridge ({clean(message.reason, 60)}): events were missed; "
                f"invalidated all {count} queries",
            )
        elif isinstance(message, Unknown):
            self.by_type[UNKNOWN] += 1
            line = f"type '{clean(message.type, 40)}'  {format_data(message.data)}"
            self._append(UNKNOWN, line, source)
        else:
            assert isinstance(message, Malformed)
            self.by_type[MALFORMED] += 1
            self._append(MALFORMED, f"{message.reason}: {clean(message.raw)}", source)

    # -- resuming after a reconnect ----------------------------------------------

    def connected(self, *, reconnect: bool) -> None:
        """A connection opened; after a reconnect, what was missed must be replayed or refetched."""
        self._reconnected = reconnect
        self._greeted = False
        self._replay = None
        self.redis_down_since = None  # the session says

    def resume_point(self) -> ResumePoint | None:
        """Where to resume from (``?since=&epoch=``), once a bridge has said where we are."""
        return self.position.point

    def _on_session(self, session: Session) -> None:
        self._greeted = False
        down_for = session.redis_down_for
        self.redis_down_since = None if down_for is None else self._clock() - down_for
        if down_for is not None:
            self._append(INFO, f"the bridge has had no Redis for {down_for:.0f}s: no events yet")
        point = self.resume_point()  # what this connection asked to resume from
        if self._reconnected and point is None:
            self._refetch_all("reconnected with nothing to resume from")
        elif self._reconnected and point is not None and point.epoch == session.epoch:
            if session.seq > point.since:
                # Replayed next: since+1..session.seq (unless a resync comes instead).
                self._replay = (point.since + 1, session.seq)
            elif session.seq == point.since:
                self._append(INFO, "resumed: no events were missed while disconnected")
        # Otherwise (another epoch, an odd seq) the bridge follows with a resync.
        if not self._reconnected:
            self._append(INFO, f"session {clean(session.epoch, 40)}, at event #{session.seq:,}")
        self._reconnected = False
        self.position.observe(session)

    def _refetch_all(self, why: str) -> None:
        count = self.cache.invalidate_all(self._clock())
        self._append(INFO, f"{why}: events may have been missed; invalidated all {count} queries")

    def check(self) -> None:
        """On the app's clock: a greeting long without a session is a bridge that cannot
        resume (one that can sends its session with the greeting)."""
        if self._greeted:
            self._after_greeting()

    def _after_greeting(self) -> None:
        """Per read, only around a (re)connect: finish a replay, or refetch without one.

        A bridge that resumes writes its session right after the greeting, but the two
        may arrive in separate reads: only events after the greeting, or SESSION_WAIT
        without a session, show a bridge that cannot resume (deciding on the greeting's
        read alone refetched everything twice now and then, on a busy machine)."""
        waited = self._clock() - self._greeted_at >= SESSION_WAIT
        if self._greeted and (self.events > self._events_at_greeting or waited):
            self._greeted = False
            if self._reconnected:
                self._reconnected = False
                self._refetch_all("reconnected to a bridge that does not replay")
        last_seq = self.position.last_seq
        if self._replay is not None and last_seq is not None:
            first, last = self._replay
            if last_seq >= last:
                self._replay = None
                self.replayed += last - first + 1
                self._append(
                    INFO,
                    f"resumed: replayed {last - first + 1:,} event(s) missed while "
                    f"disconnected (seq {first:,}-{last:,}); no refetch needed",
                )

    def note(self, text: str) -> None:
        """Add an informational line (connection changes, resyncs)."""
        self._append(INFO, clean(text, 300))

    def _append(self, kind: LineKind, text: str, source: Source = None) -> None:
        wall = self._wallclock()
        self.entries.append(
            (kind, f"{self._timestamp(wall)}  {_PADDED[kind]}  {text}", source, wall)
        )
        self._new += 1
        if self.paused:
            self.held += 1

    def _timestamp(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:  # strftime once a second, not once a message
            self._second = second
            self._stamp = time.strftime("%H:%M:%S", time.localtime(wall))
        return clock_time(wall, self._stamp)

    # -- read by the app on its clock ------------------------------------------

    @property
    def pending(self) -> int:
        """Lines the next :meth:`drain` would return (before the filter), at most."""
        return 0 if self.paused else min(self._new, len(self.entries))

    def drain(self) -> list[Entry]:
        """The lines to append to the log since the last drain (none while paused).

        On resume, the next drain returns what arrived while paused (as much as the
        ring still holds), so resuming appends rather than rebuilding the log.
        """
        if self.paused:
            return []
        new, self._new = min(self._new, len(self.entries)), 0
        if not new:
            return []
        return self._visible(islice(self.entries, len(self.entries) - new, None))

    def visible_entries(self) -> list[Entry]:
        """Every kept entry that passes the filter: rebuilds the log after clear/filter/resume."""
        self._new = 0
        return self._visible(self.entries)

    def _visible(self, entries: Iterable[Entry]) -> list[Entry]:
        shown = self.shown
        return [entry for entry in entries if entry[0] in shown]

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self.held = 0

    def clear(self) -> None:
        self.entries.clear()
        self._new = self.held = 0

    @property
    def problems(self) -> int:
        return self.by_type[UNKNOWN] + self.by_type[MALFORMED]
