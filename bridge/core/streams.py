"""BullMQ's own event streams, as the bridge reads them (pure, no I/O).

BullMQ appends every job transition of a queue, in order, to the Redis Stream
``<prefix>:<queue>:events`` (field ``event``, plus ``jobId`` and more), and keeps the
queue's settings in the hash ``<prefix>:<queue>:meta``. An entry id ``<ms>-<n>`` is both a
resume cursor and a timestamp. This module names those keys, compares ids, and turns a
read's entries into the events the existing web client understands (docs/protocol.md,
"BullMQ streams"): per job event a ``single-job-refresh``, per queue event a
``single-queue-refresh``, and per read and queue one ``job-refresh`` and one
``queue-refresh``, the shape of Better Bull Board's own ingest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from bridge.core.protocol import GENERIC, Change, EventType, glob_escape

DEFAULT_BULLMQ_PREFIX = "bull"
DEFAULT_RESCAN = 10.0  # seconds between looks for new queues
#: Queues read at most (each is a stream key on every XREAD).
MAX_QUEUES_READ = 10_000
#: BullMQ's queue-level events (no ``jobId``): a queue's state changed, not one job's.
QUEUE_EVENTS = frozenset({"drained", "paused", "resumed", "cleaned"})
#: An ``event`` name longer than this is cut (BullMQ's are under 20 characters).
MAX_EVENT_NAME = 64
MAX_SEQ = (1 << 64) - 1

StreamId = tuple[int, int]
#: One stream entry as Redis returns it: id and fields.
Entry = tuple[bytes, dict[bytes, bytes]]


def stream_key(prefix: bytes, queue: bytes) -> bytes:
    return b"%s:%s:events" % (prefix, queue)


def meta_pattern(prefix: bytes) -> bytes:
    """The SCAN pattern of every queue's ``meta`` hash under ``prefix`` (glob-escaped)."""
    return glob_escape(prefix.decode("latin-1")).encode("latin-1") + b":*:meta"


def queue_of_meta(prefix: bytes, key: bytes) -> bytes | None:
    """The queue a ``meta`` key belongs to (names may hold ``:``), or None if it is not one."""
    head, tail = prefix + b":", b":meta"
    if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail):
        return key[len(head) : -len(tail)]
    return None


def parse_id(raw: bytes) -> StreamId:
    """``b"1700000000000-3"`` as (ms, n); raises ValueError for anything else."""
    ms, _, n = raw.partition(b"-")
    if not (ms.isdigit() and n.isdigit()):
        raise ValueError(f"not a stream id: {raw[:40]!r}")
    return int(ms), int(n)


def format_id(stream_id: StreamId) -> bytes:
    return b"%d-%d" % stream_id


def just_before(ms: int) -> bytes:
    """The id to read after to get every entry from ``ms`` on (XREAD is exclusive)."""
    return format_id((ms - 1, MAX_SEQ)) if ms > 0 else b"0-0"


def trimmed_past(position: bytes, first: bytes | None) -> bool:
    """Whether entries after ``position`` are gone: the oldest entry kept (``first``) is
    newer. BullMQ trims oldest first (``MAXLEN ~``), so the entries right after
    ``position`` went before ``first`` did. (Were exactly the entries up to ``position``
    trimmed, this says so too: rare, as it needs a reader thousands of entries behind.)"""
    return first is not None and parse_id(first) > parse_id(position)


def changes_of(queue: bytes, entries: Sequence[Entry], *, max_payload: int) -> list[Change]:
    """The events of one read of one queue's stream, in stream order: a
    ``single-job-refresh`` per job event, a ``single-queue-refresh`` per queue event.

    Each frame's ``data`` also carries ``queueName``, ``event`` (BullMQ's name) and
    ``streamId``. A ``jobId`` over ``max_payload`` bytes drops its entry. Per entry, the
    extra fields are one formatting of bytes already JSON (the hot path of the source).
    """
    changes: list[Change] = []
    append = changes.append
    job_head = b',"queueName":%s,"event":' % _json(queue)
    for entry_id, fields in entries:
        event = fields.get(b"event", b"")
        event_json = _EVENT_JSON.get(event) or _json(event[:MAX_EVENT_NAME])
        stream_id = entry_id if _STREAM_ID.fullmatch(entry_id) else b"?"
        job = fields.get(b"jobId")
        if job is not None and event not in _QUEUE_EVENTS:
            if len(job) <= max_payload:
                extra = b'%s%s,"streamId":"%s"' % (job_head, event_json, stream_id)
                append((EventType.SINGLE_JOB_REFRESH, job, queue, extra))
        else:
            extra = b',"event":%s,"streamId":"%s"' % (event_json, stream_id)
            append((EventType.SINGLE_QUEUE_REFRESH, queue, queue, extra))
    return changes


def coarse_of(queue: bytes, jobs: bool, last: bytes) -> list[Change]:
    """The coarse hints of a queue whose stream moved up to entry ``last``: one
    ``job-refresh "1"`` if a job changed, and one ``queue-refresh <queue>``: the shape of
    Better Bull Board's own ingest (one hint per batch, plus the per-job ones)."""
    last = last if _STREAM_ID.fullmatch(last) else b"?"
    coarse: list[Change] = []
    if jobs:
        extra = b',"queueName":%s,"streamId":"%s"' % (_json(queue), last)
        coarse.append((EventType.JOB_REFRESH, GENERIC, queue, extra))
    coarse.append((EventType.QUEUE_REFRESH, queue, queue, b',"streamId":"%s"' % last))
    return coarse


_STREAM_ID = re.compile(rb"[0-9]{1,20}-[0-9]{1,20}")
_QUEUE_EVENTS = frozenset(name.encode() for name in QUEUE_EVENTS)


def _json(raw: bytes) -> bytes:
    """A JSON string of ``raw`` (as UTF-8, errors replaced): ASCII, escapes and all."""
    return json.dumps(raw.decode("utf-8", "replace")).encode()


#: BullMQ's event names, as JSON strings: most entries need no encoding at all.
_EVENT_JSON: dict[bytes, bytes] = {
    name: _json(name)
    for name in (
        b"added", b"waiting", b"active", b"progress", b"completed", b"failed",
        b"retries-exhausted", b"delayed", b"stalled", b"removed", b"waiting-children",
        b"duplicated", b"deduplicated", b"drained", b"paused", b"resumed", b"cleaned",
    )
}  # fmt: skip


def newest_ms(entries: Sequence[Entry]) -> int:
    """The time of the newest of ``entries`` (the last), in ms; 0 if it has none."""
    ms = entries[-1][0].partition(b"-")[0] if entries else b""
    return int(ms) if ms.isdigit() else 0
