"""The wire contract (docs/protocol.md), as pure functions and tables.

No I/O and no imports of redis, websockets or textual: both the bridge and the
terminal client build on this module, and nothing else names a channel or a
message type.

Redis side: ``PUBLISH <prefix><type> <payload>`` with a bare, arbitrary payload.
WebSocket side: one JSON text frame per event, ``{"type": T, "data": {FIELD: payload}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, NamedTuple, TypeGuard
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

DEFAULT_PREFIX = "bbb:ingest:events:"
DEFAULT_WEBSOCKET_PORT = 8081
DEFAULT_WEBSOCKET_URL = f"ws://localhost:{DEFAULT_WEBSOCKET_PORT}"
GREETING_ID = "connected"


class EventType(StrEnum):
    """The eight event types; the value is both the channel suffix and the frame ``type``."""

    JOB_REFRESH = "job-refresh"
    QUEUE_REFRESH = "queue-refresh"
    JOB_SCHEDULER_REFRESH = "job-scheduler-refresh"
    LOG_REFRESH = "log-refresh"
    SINGLE_JOB_REFRESH = "single-job-refresh"
    SINGLE_QUEUE_REFRESH = "single-queue-refresh"
    SINGLE_JOB_SCHEDULER_REFRESH = "single-job-scheduler-refresh"
    JOB_LOG_REFRESH = "job-log-refresh"


#: The ``data`` field that carries the Redis payload, per type (docs/protocol.md section 1).
DATA_FIELD: dict[EventType, str] = {
    EventType.JOB_REFRESH: "jobId",
    EventType.QUEUE_REFRESH: "queueName",
    EventType.JOB_SCHEDULER_REFRESH: "schedulerKey",
    EventType.LOG_REFRESH: "jobId",
    EventType.SINGLE_JOB_REFRESH: "jobId",
    EventType.SINGLE_QUEUE_REFRESH: "queueName",
    EventType.SINGLE_JOB_SCHEDULER_REFRESH: "schedulerKey",
    EventType.JOB_LOG_REFRESH: "jobId",
}

#: The four seed types and the test events the original's script publishes (section 4).
SEED_EVENTS: tuple[tuple[EventType, str], ...] = (
    (EventType.JOB_REFRESH, "test-job-123"),
    (EventType.QUEUE_REFRESH, "test-queue"),
    (EventType.JOB_SCHEDULER_REFRESH, "test-scheduler-key"),
    (EventType.LOG_REFRESH, "test-job-456"),
)

QueryKey = tuple[str, ...]

# Section 3: message type -> query keys the web client invalidates. A trailing
# ``None`` stands for the event's own id (``["jobs/single", jobId]``).
_INVALIDATES: dict[EventType, tuple[tuple[str | None, ...], ...]] = {
    EventType.JOB_REFRESH: (("jobs/table",), ("jobs/stats",)),
    EventType.QUEUE_REFRESH: (("queues/table",), ("queues/stats",)),
    EventType.JOB_SCHEDULER_REFRESH: (("queues/table",), ("queues/stats",)),
    EventType.LOG_REFRESH: (("jobs/table",), ("jobs/stats",)),
    EventType.SINGLE_JOB_REFRESH: (("jobs/single", None),),
    EventType.JOB_LOG_REFRESH: (("jobs/logs", None),),
    EventType.SINGLE_QUEUE_REFRESH: (),
    EventType.SINGLE_JOB_SCHEDULER_REFRESH: (),
}


def invalidated_keys(event_type: EventType, event_id: str) -> tuple[QueryKey, ...]:
    """Return the query keys the web client invalidates for one message."""
    return tuple(
        tuple(event_id if part is None else part for part in key)
        for key in _INVALIDATES[event_type]
    )


# ---------------------------------------------------------------------------
# Redis side


def channel_name(prefix: str, event_type: EventType) -> str:
    """Return the Redis channel a publisher uses for ``event_type``."""
    return f"{prefix}{event_type.value}"


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself (``*?[]\\`` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def subscription_pattern(prefix: str) -> str:
    """Return the PSUBSCRIBE pattern that matches every channel under ``prefix``.

    Glob characters in the prefix are escaped, so ``a*b:`` matches only itself.
    """
    return glob_escape(prefix) + "*"


def channel_table(prefix: str) -> dict[bytes, EventType]:
    """Map each full channel name (as Redis sends it, bytes) to its event type."""
    return {channel_name(prefix, t).encode(): t for t in EventType}


def decode_payload(payload: bytes | str) -> str:
    """Turn a Redis payload into text; bytes that are not UTF-8 become U+FFFD."""
    if isinstance(payload, str):
        return payload
    return payload.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# WebSocket side: server frames

# The frame text up to the payload, per type: ``{"type":"job-refresh","data":{"jobId":``.
_FRAME_HEADS: dict[EventType, bytes] = {
    t: f'{{"type":"{t.value}","data":{{"{DATA_FIELD[t]}":'.encode() for t in EventType
}

#: The greeting sent first on every connection; clients skip it.
GREETING: bytes = b'{"type":"job-refresh","data":{"id":"connected"}}'


class ControlType(StrEnum):
    """The messages this project added (docs/protocol.md): the web client ignores them."""

    SESSION = "session"  # right after the greeting: the bridge's epoch, last seq, Redis
    RESYNC = "resync"  # events may have been missed: refetch everything
    REDIS_DOWN = "redis-down"  # no events until a redis-reconnected resync says it is back
    REDIS_UP = "redis-up"  # ... or until this: back, and nothing missed (streams resume)
    SUBSCRIBED = "subscribed"  # the answer to a subscription frame
    ERROR = "error"  # ... when it could not be applied


class ResyncReason(StrEnum):
    """Why a ``resync`` was sent."""

    EPOCH_CHANGED = "epoch-changed"  # resuming from another bridge run
    REPLAY_UNAVAILABLE = "replay-unavailable"  # resuming from events no longer kept
    UNKNOWN_SEQ = "unknown-seq"  # resuming from a seq ahead of the bridge
    REDIS_RECONNECTED = "redis-reconnected"  # a Redis subscription was lost meanwhile
    SLOW_CLIENT = "slow-client"  # this client's events were skipped while it lagged
    STREAM_TRIMMED = "stream-trimmed"  # a BullMQ stream was trimmed past where we read


def encode_control(kind: str, **data: object) -> bytes:
    """A control message (an extension): ``{"type": kind, "data": {...}}``, compact JSON."""
    return json.dumps({"type": kind, "data": data}, separators=(",", ":")).encode()


def encode_session(epoch: str, seq: int, *, redis_down_for: float | None = None) -> bytes:
    """``{"type":"session","data":{"epoch":...,"seq":<last seq>,"redis":"up"}}``: where a
    client stands; ``"redis":"down"`` with ``down_seconds`` while the bridge has no Redis."""
    if redis_down_for is None:
        return encode_control(ControlType.SESSION, epoch=epoch, seq=seq, redis="up")
    down = round(redis_down_for, 1)
    return encode_control(
        ControlType.SESSION, epoch=epoch, seq=seq, redis="down", down_seconds=down
    )


def encode_redis_down(down_for: float = 0.0) -> bytes:
    """``{"type":"redis-down","data":{"down_seconds":0.0}}``: no events until a resync."""
    return encode_control(ControlType.REDIS_DOWN, down_seconds=round(down_for, 1))


def encode_redis_up(down_for: float) -> bytes:
    """``{"type":"redis-up","data":{"down_seconds":2.5}}``: Redis is back and every event
    of the outage follows (the BullMQ streams resumed where they were): no refetch."""
    return encode_control(ControlType.REDIS_UP, down_seconds=round(down_for, 1))


def encode_resync(reason: ResyncReason, **details: object) -> bytes:
    """The control message announcing a gap: ``{"type":"resync","data":{"reason":...}}``."""
    return encode_control(ControlType.RESYNC, reason=reason, **details)


# Payload bytes that a JSON string can hold as they are: printable ASCII but " and \.
_NEEDS_ESCAPING = re.compile(rb'[^\x20-\x7e]|["\\]')


#: One event from a source, before it is numbered and framed: its type, its payload (the
#: value of the type's ``data`` field), the queue it belongs to (what ``?queue=`` filters
#: on; None when it names none) and more ``data`` fields, already JSON (``b""`` for none,
#: else ``b',"queueName":"emails",...'``, each value JSON-escaped by its source).
Change = tuple[EventType, bytes, bytes | None, bytes]

#: The types whose payload is a queue name; ``"1"`` there means "some queue changed".
QUEUE_TYPES: frozenset[EventType] = frozenset(
    {EventType.QUEUE_REFRESH, EventType.SINGLE_QUEUE_REFRESH}
)
GENERIC = b"1"  # "something changed": names no one job, queue or scheduler


def pubsub_change(event_type: EventType, payload: bytes) -> Change:
    """A published event: only queue events name a queue (``"1"`` names none)."""
    named = event_type in QUEUE_TYPES and payload != GENERIC
    return (event_type, payload, payload if named else None, b"")


def event_queue(message: Event) -> bytes | None:
    """The queue a received event belongs to, as the bridge filters on it (see Change)."""
    queue = message.data.get("queueName")
    if not isinstance(queue, str) or queue == "1":
        return None
    return queue.encode()


def encode_numbered_events(events: Iterable[Change], last_seq: int) -> list[bytes]:
    """The frame of each event, numbered from ``last_seq + 1``: as :func:`encode_event`
    of the decoded payload gives it.

    The bridge's per-message hot path, so written as one loop: job ids, queue names and
    scheduler keys are plain ASCII, framed as they are, without decoding and re-encoding.
    """
    heads, plain = _FRAME_HEADS, _NEEDS_ESCAPING.search
    frames: list[bytes] = []
    append = frames.append
    seq = last_seq
    for event_type, payload, _, extra in events:
        seq += 1
        if plain(payload) is None:
            append(b'%s"%s"%s},"seq":%d}' % (heads[event_type], payload, extra, seq))
        else:
            append(encode_event(event_type, decode_payload(payload), seq, extra))
    return frames


def encode_event(
    event_type: EventType, payload: str, seq: int | None = None, extra: bytes = b""
) -> bytes:
    """Return the UTF-8 JSON frame of one event: ``{"type":"job-refresh","data":{"jobId":"7"}}``.

    ``extra`` adds ``data`` fields (see :data:`Change`). With ``seq`` (an extension) the
    frame ends ``...},"seq":42}``. The output is ASCII (non-ASCII is escaped), so it is
    valid UTF-8 whatever the payload.
    """
    tail = b"}}" if seq is None else b'},"seq":%d}' % seq
    return _FRAME_HEADS[event_type] + json.dumps(payload).encode() + extra + tail


# ---------------------------------------------------------------------------
# Resuming after a reconnect: ``ws://host:8081/?since=<seq>&epoch=<epoch>``


class ResumePoint(NamedTuple):
    """The last event a client received (``seq``) from the bridge run ``epoch``."""

    since: int
    epoch: str


def parse_resume(query: str) -> ResumePoint | None:
    """Read ``since``/``epoch`` from a request's query string; None when absent.

    Raises ValueError with a one-line message when they are present but unusable.
    """
    params = parse_qs(query)
    since, epoch = params.get("since"), params.get("epoch")
    if since is None and epoch is None:
        return None
    if since is None or epoch is None:
        raise ValueError("since= and epoch= go together")
    if not (since[-1].isascii() and since[-1].isdigit()) or len(since[-1]) > 18:
        raise ValueError("since= must be a whole number (the seq of the last event received)")
    return ResumePoint(int(since[-1]), epoch[-1])


def with_resume(url: str, point: ResumePoint | None) -> str:
    """``url`` with ``since``/``epoch`` set to ``point`` (or removed when None)."""
    parts = urlsplit(url)
    params = [
        (k, v)
        for k, values in parse_qs(parts.query, keep_blank_values=True).items()
        if k not in ("since", "epoch")
        for v in values
    ]
    if point is not None:
        params += [("since", str(point.since)), ("epoch", point.epoch)]
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(params)))


# ---------------------------------------------------------------------------
# WebSocket side: what a client makes of a frame


class Event(NamedTuple):
    """A well-formed event of one of the eight types.

    A NamedTuple rather than a frozen dataclass: a client builds one per message,
    and this is several times cheaper to construct.
    """

    type: EventType
    id: str
    data: dict[str, Any]
    seq: int | None = None  # the bridge's sequence number (an extension; None if absent)


class Greeting(NamedTuple):
    """The ``connected`` greeting: harmless, and skipped by clients."""


class Resync(NamedTuple):
    """The bridge says events may have been missed: refetch everything (an extension).
    ``reason`` stays a string: a newer bridge may give one this client does not know."""

    reason: str
    data: dict[str, Any]


class Session(NamedTuple):
    """Where this connection starts: the bridge's ``epoch`` and its last ``seq`` (an extension).

    ``redis_down_for``: seconds the bridge has been without Redis, or None while it has it
    (and from bridges that do not say).
    """

    epoch: str
    seq: int
    redis_down_for: float | None = None


class RedisDown(NamedTuple):
    """The bridge lost Redis ``down_for`` seconds ago: no events until a resync (an extension)."""

    down_for: float


class RedisUp(NamedTuple):
    """Redis is back after ``down_for`` seconds and nothing was missed (an extension)."""

    down_for: float


class Unknown(NamedTuple):
    """Valid JSON with a ``type`` this client does not know (an extension): ignored."""

    type: str
    data: dict[str, Any]


class Malformed(NamedTuple):
    """A frame that is not a message: not JSON, not an object, or no object ``data``."""

    reason: str
    raw: str


class Batch(NamedTuple):
    """A ``?batch=`` frame (an extension): a JSON array of messages, each as if framed alone."""

    messages: tuple[Message, ...]


Message = Event | Greeting | Resync | Session | RedisDown | RedisUp | Batch | Unknown | Malformed

_TYPES: dict[str, EventType] = {t.value: t for t in EventType}  # faster than EventType(s)
_MAX_RAW = 200  # characters of a malformed frame kept for display
#: A batch holds at most this many messages (a second of 20,000 events/s is 20,000): past
#: it, the frame is malformed, so one frame (16 MiB of ``[1,1,...]`` is 8 million
#: items) cannot keep a client busy for minutes.
MAX_BATCH = 100_000
_GREETING = Greeting()
# The exact shape encode_event() produces, with a payload free of escapes: most frames.
_PLAIN_FRAME = re.compile(
    r'\{"type":"([a-z-]+)","data":\{"(jobId|queueName|schedulerKey)":"([^"\\\x00-\x1f]*)"\}'
    r'(?:,"seq":(0|[1-9][0-9]{0,17}))?\}'
)


def parse_frame(frame: str | bytes) -> Message:
    """Classify one received frame; never raises.

    Frames of exactly the bridge's own shape take a regular-expression fast path
    (about a third of the cost of ``json.loads`` here); anything else is parsed as JSON.
    The two paths agree on every input (a property test checks it).
    """
    text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
    plain = _PLAIN_FRAME.fullmatch(text)
    if plain is not None:
        kind, name, value, seq = plain.groups()
        event_type = _TYPES.get(kind)
        if event_type is not None and DATA_FIELD[event_type] == name:
            return Event(event_type, value, {name: value}, None if seq is None else int(seq))
    return _parse_json(text)


def _parse_json(text: str) -> Message:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return Malformed("not JSON", text[:_MAX_RAW])
    if isinstance(message, list) and message:  # the bridge never sends an empty batch
        if len(message) > MAX_BATCH:
            return Malformed(f"a batch of more than {MAX_BATCH:,} messages", text[:_MAX_RAW])
        return Batch(tuple(_parse_message(item, None) for item in message))
    return _parse_message(message, text)


def _parse_message(message: object, text: str | None) -> Message:
    """One parsed JSON value as a message (``text``: the frame, or None inside a batch)."""
    if not isinstance(message, dict):
        return Malformed("not a JSON object", _raw(message, text))
    kind, data = message.get("type"), message.get("data")
    if not isinstance(kind, str):
        return Malformed("no string 'type'", _raw(message, text))
    if not isinstance(data, dict):
        return Malformed("no object 'data'", _raw(message, text))
    if data.get("id") == GREETING_ID:
        return _GREETING
    event_type = _TYPES.get(kind)
    if event_type is None:
        if kind == ControlType.RESYNC:
            return Resync(str(data.get("reason", "unspecified")), data)
        if kind == ControlType.SESSION:
            epoch, seq = data.get("epoch"), data.get("seq")
            if isinstance(epoch, str) and _is_seq(seq):
                down = _seconds(data.get("down_seconds")) if data.get("redis") == "down" else None
                return Session(epoch, seq, down)
        if kind == ControlType.REDIS_DOWN:
            return RedisDown(_seconds(data.get("down_seconds")))
        if kind == ControlType.REDIS_UP:
            return RedisUp(_seconds(data.get("down_seconds")))
        return Unknown(kind, data)
    value = data.get(DATA_FIELD[event_type], data.get("id", ""))
    seq = message.get("seq")
    return Event(
        event_type,
        value if isinstance(value, str) else json.dumps(value),
        data,
        seq if _is_seq(seq) else None,
    )


def _raw(message: object, text: str | None) -> str:
    """What a malformed message looked like, cut for display."""
    if text is None:
        try:
            text = json.dumps(message)
        except (ValueError, RecursionError):
            text = "?"
    return text[:_MAX_RAW]


def _seconds(value: object) -> float:
    """A duration as the bridge sends it: a finite, non-negative number (else 0)."""
    if type(value) not in (int, float):
        return 0.0
    seconds = float(value)  # type: ignore[arg-type]
    return seconds if 0 <= seconds < 10**9 else 0.0


def _is_seq(value: object) -> TypeGuard[int]:
    """A sequence number as the bridge sends it: a non-negative int (not a bool)."""
    return type(value) is int and 0 <= value < 10**18


class ResumeTracker:
    """Where a client stands in the bridge's numbering, to resume from after a drop.

    Feed it every message (:meth:`observe`), or the last event's ``seq`` of a read
    (:meth:`advance`); :attr:`point` is then the ``?since=&epoch=`` to reconnect with,
    or None before any session. The TUI, ``bbb-bridge tail`` and the page (in its own
    JavaScript) keep the same books.
    """

    __slots__ = ("epoch", "last_seq")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.last_seq: int | None = None

    @property
    def point(self) -> ResumePoint | None:
        if self.epoch is None or self.last_seq is None:
            return None
        return ResumePoint(self.last_seq, self.epoch)

    def observe(self, message: Message) -> None:
        """A session says where a connection starts; an event moves the point on."""
        if type(message) is Event:
            if message.seq is not None:
                self.last_seq = message.seq
        elif isinstance(message, Session):
            self.epoch, self.last_seq = message.epoch, message.seq
        elif isinstance(message, Batch):
            for item in message.messages:
                self.observe(item)

    def advance(self, seq: int) -> None:
        """The last event of a read carried ``seq`` (the hot path's shortcut)."""
        self.last_seq = seq
