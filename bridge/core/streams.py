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

from collections.abc import Iterable, Sequence

from bridge.core.protocol import GENERIC, Change, EventType, extra_fields

DEFAULT_BULLMQ_PREFIX = "bull"
DEFAULT_RESCAN = 10.0  # seconds between looks for new queues
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
    escaped = b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in prefix)
    return escaped + b":*:meta"


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
    """The events of one read of one queue's stream, in stream order, then that read's
    coarse hints: ``job-refresh "1"`` if a job changed, and ``queue-refresh <queue>``.

    Each frame's ``data`` also carries ``queueName``, ``event`` (BullMQ's name) and
    ``streamId``. A ``jobId`` over ``max_payload`` bytes drops its entry.
    """
    changes: list[Change] = []
    append = changes.append
    queue_name = queue.decode("utf-8", "replace")
    jobs = False
    for entry_id, fields in entries:
        event = fields.get(b"event", b"").decode("utf-8", "replace")[:MAX_EVENT_NAME]
        stream_id = entry_id.decode("ascii", "replace")
        job = fields.get(b"jobId")
        if job is not None and event not in QUEUE_EVENTS:
            if len(job) > max_payload:
                continue
            jobs = True
            extra = extra_fields(queueName=queue_name, event=event, streamId=stream_id)
            append((EventType.SINGLE_JOB_REFRESH, job, queue, extra))
        else:
            extra = extra_fields(event=event, streamId=stream_id)
            append((EventType.SINGLE_QUEUE_REFRESH, queue, queue, extra))
    if entries:
        last = entries[-1][0].decode("ascii", "replace")
        if jobs:
            extra = extra_fields(queueName=queue_name, streamId=last)
            append((EventType.JOB_REFRESH, GENERIC, queue, extra))
        append((EventType.QUEUE_REFRESH, queue, queue, extra_fields(streamId=last)))
    return changes


def lag_ms(entries: Iterable[Entry], now_ms: int) -> int:
    """How far behind the newest of ``entries`` is from ``now_ms`` (0 when ahead)."""
    newest = max((parse_id(entry_id)[0] for entry_id, _ in entries), default=now_ms)
    return max(now_ms - newest, 0)
