"""BullMQ's per-queue event streams as a source: every job transition, in order, pushed.

One connection (a :class:`~bridge.sources.resp.RedisLink`: RESP parsed in bulk by
hiredis, no redis-py objects per entry) reads every watched queue's stream with one
blocking ``XREAD`` (up to :data:`READ_COUNT` entries of each per call), keeping the last
id read per queue. Unlike
pub/sub, a stream remembers: after a reconnect each queue is read on from its last id,
so nothing is lost and no resync is needed, unless the stream was trimmed past that id
meanwhile (BullMQ keeps about 10,000 entries): then, and only then, ``on_gap``.

Queues are found by a SCAN for their ``meta`` hash every ``rescan`` seconds (or named
with ``--queues``). Queues there at the start are read from their current end; a queue
found later, from the bridge's start time (stream ids are times), so none of its first
events is missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from bridge.core.backoff import Backoff
from bridge.core.protocol import Change, EventType, decode_payload
from bridge.core.streams import (
    DEFAULT_RESCAN,
    MAX_QUEUES_READ,
    changes_of,
    coarse_of,
    just_before,
    meta_pattern,
    newest_ms,
    parse_id,
    queue_of_meta,
    stream_key,
    trimmed_past,
)
from bridge.core.subscriptions import MAX_QUEUE_NAME  # longer: not filterable, left out
from bridge.sources.resp import RedisLink, RedisRefused, command
from bridge.sources.supervisor import Supervised

log = logging.getLogger("bridge.source")

#: Entries read per queue and call: a burst is read in few calls, and no one queue's
#: burst holds the others back for long.
READ_COUNT = 1000
#: The longest one XREAD blocks: new queues join the read within about this long.
MAX_BLOCK = 1.0
#: Each stream's first and last entry ids (or false): one short reply for all of them.
ENDS = """
local ends = {}
for i, key in ipairs(KEYS) do
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  ends[i] = {first and first[1] or false, last and last[1] or false}
end
return ends
"""
#: Every queue's stream ends are looked at at least this often (the queues a read found
#: entries in, on every read): a stream trimmed or reset while the bridge was busy,
#: frozen or away is seen before its next entries are read.
CHECK_ALL = 0.25
#: Positions of queues no longer watched, kept to read on from if they come back.
REMEMBERED = 10_000
#: Each queue's coarse pair (job-refresh "1", queue-refresh) goes at most this often: at
#: once after a quiet spell, then for all that moved meanwhile. The per-job events go at
#: once; lists a page shows need no more than ten refreshes a second.
COARSE_INTERVAL = 0.1


class StreamSource(Supervised):
    """Read every BullMQ queue's event stream under ``prefix``; hand each read's events
    to ``on_events``. ``queues``: only these (not discovered). ``on_gap(queues)``: those
    queues' streams lost entries not read yet (trimmed past where they were read, or
    deleted and made again)."""

    what = "stream reader"

    def __init__(
        self,
        url: str,
        prefix: str,
        on_events: Callable[[list[Change]], None],
        *,
        max_payload: int,
        stall_timeout: float,
        queues: Sequence[str] = (),
        rescan: float = DEFAULT_RESCAN,
        on_gap: Callable[[list[str]], None] | None = None,
        backoff: Backoff | None = None,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[float, bool], None] | None = None,
    ) -> None:
        super().__init__(
            url, stall_timeout=stall_timeout, backoff=backoff, on_down=on_down, on_up=on_up
        )
        self.prefix = prefix.encode()
        self.named = tuple(q.encode() for q in queues)
        self.rescan = rescan
        self.max_payload = max_payload
        self._on_events = on_events
        self._on_gap = on_gap
        #: Per queue, the id to read after.
        self.positions: dict[bytes, bytes] = {}
        #: Queues whose position is a time, not an entry read (nothing there to trim past).
        self._unread: set[bytes] = set()
        #: Queues left out because their events key is not a stream (said once each).
        self._wrong_type: set[bytes] = set()
        self._said_too_long = False  # a queue name left out for its length (said once)
        #: Where queues no longer watched were: read on from there if they come back.
        self._remembered: OrderedDict[bytes, bytes] = OrderedDict()
        #: Queues whose stream ends the next read looks at (see CHECK_ALL).
        self._active: set[bytes] = set()
        self._next_check_all = 0.0
        self._start: bytes | None = None  # just before the bridge's start, in Redis's time
        self._next_scan = 0.0
        #: Queues that moved since their last coarse pair: (a job changed, last entry id).
        self._coarse: dict[bytes, tuple[bool, bytes]] = {}
        self._coarse_due = 0.0  # when the next coarse pairs may go
        # For /metrics.
        self.entries: Counter[bytes] = Counter()  # stream entries read, by queue
        self.lag = 0.0  # seconds between the newest entry of the last read and reading it

    async def _connect_and_read(self) -> None:
        client = await RedisLink.open(self.url, timeout=self._stall_timeout)
        try:
            await self._call(client.call("PING"))
            if self._start is None:  # the first connection: the queues there now, from now
                seconds, micros = await self._call(client.call("TIME"))
                start = just_before((int(seconds) * 1_000_000 + int(micros)) // 1000)
                await self._watch(client, await self._discover(client), start=start)
                self._start = start
            self._next_scan = time.monotonic() + self.rescan
            self._next_check_all = 0.0  # back: every stream is looked at first
            await self._probe(client)
            self._connected(
                f"Reading the BullMQ event streams of {len(self.positions)} queue(s) under "
                f"{self.prefix.decode(errors='replace')}:"
            )
            while True:
                if time.monotonic() >= self._next_scan:
                    await self._rescan(client)
                await self._read(client)
        finally:
            await client.close()

    async def _probe(self, client: RedisLink) -> None:
        """The commands a read needs, tried before saying the streams are read: a Redis
        that refuses one (an ACL) stays down, retried with backoff, instead of flapping
        up and down for every client."""
        key = stream_key(self.prefix, next(iter(self.positions), b"probe"))
        client.send_all(
            [command("EVAL", ENDS, 1, key), command("XREAD", "COUNT", 1, "STREAMS", key, "$")]
        )
        for reply in await self._call(client.replies(2)):
            if isinstance(reply, hiredis.ReplyError) and "WRONGTYPE" not in str(reply):
                raise RedisRefused(str(reply))

    async def _call(self, request: Any, extra: float = 0.0) -> Any:
        """One Redis call, given up on after ``--redis-timeout`` (plus ``extra``)."""
        async with asyncio.timeout(self._stall_timeout + extra):
            return await request

    async def _discover(self, client: RedisLink) -> set[bytes]:
        if self.named:
            return set(self.named)
        found: set[bytes] = set()
        cursor = b"0"
        pattern = meta_pattern(self.prefix)
        while True:
            cursor, keys = await self._call(
                client.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            )
            for key in keys:
                queue = queue_of_meta(self.prefix, key)
                if queue is None:
                    continue
                if len(queue) <= MAX_QUEUE_NAME:
                    found.add(queue)
                elif not self._said_too_long:
                    self._said_too_long = True
                    log.warning(
                        "Not reading a queue whose name is %d bytes (over %d): %r...",
                        len(queue),
                        MAX_QUEUE_NAME,
                        queue[:40],
                    )
            if cursor == b"0":
                return found

    async def _watch(
        self, client: RedisLink, queues: set[bytes], *, start: bytes | None = None
    ) -> None:
        """Start reading ``queues``: with ``start`` (the first time), from their current
        end (``start`` for an empty one); later, from the bridge's start."""
        new = sorted(queues - self.positions.keys())[: MAX_QUEUES_READ - len(self.positions)]
        new = await self._streams_only(client, new)
        if not new:
            return
        at_end = start is not None
        start = start or self._start
        assert start is not None
        if at_end:
            for queue in new:
                client.send("XREVRANGE", stream_key(self.prefix, queue), "+", "-", "COUNT", 1)
            lasts = await self._call(client.replies(len(new)))
            for queue, last in zip(new, lasts, strict=True):
                found = isinstance(last, list) and bool(last)
                self.positions[queue] = last[0][0] if found else start
                if not found:
                    self._unread.add(queue)
        else:
            for queue in new:
                remembered = self._remembered.pop(queue, None)
                self.positions[queue] = remembered or start
                if remembered is None:
                    self._unread.add(queue)
        names = ", ".join(repr(decode_payload(q)) for q in new[:10])
        more = f" and {len(new) - 10} more" if len(new) > 10 else ""
        when = "from now" if at_end else "from the bridge's start"
        log.info("Watching %d BullMQ queue(s) %s: %s%s", len(new), when, names, more)

    async def _streams_only(self, client: RedisLink, queues: list[bytes]) -> list[bytes]:
        """The queues whose events key is a stream, or not there yet: any other type would
        fail every XREAD of every queue (WRONGTYPE). The others are left out, said once."""
        if not queues:
            return []
        for queue in queues:
            client.send("TYPE", stream_key(self.prefix, queue))
        kept = []
        for queue, kind in zip(queues, await self._call(client.replies(len(queues))), strict=True):
            if kind in (b"stream", b"none"):
                kept.append(queue)
                self._wrong_type.discard(queue)
            elif queue not in self._wrong_type:
                self._wrong_type.add(queue)
                log.warning(
                    "Not reading queue %r: its events key holds a %s, not a stream",
                    decode_payload(queue),
                    decode_payload(kind if isinstance(kind, bytes) else b"?"),
                )
        return kept

    async def _drop_wrong_types(self, client: RedisLink) -> None:
        """An XREAD failed with WRONGTYPE: some events key is no longer a stream."""
        watched = list(self.positions)
        kept = set(await self._streams_only(client, watched))
        for queue in watched:
            if queue not in kept:
                self._forget(queue)

    async def _rescan(self, client: RedisLink) -> None:
        self._next_scan = time.monotonic() + self.rescan
        found = await self._discover(client)
        gone = self.positions.keys() - found
        for queue in sorted(gone):
            self._forget(queue)
            log.info("BullMQ queue %r is gone (no meta): no longer watched", decode_payload(queue))
        await self._watch(client, found)

    def _forget(self, queue: bytes) -> None:
        position = self.positions.pop(queue)
        if queue not in self._unread:  # were it back, it is read on from here
            self._remembered[queue] = position
            if len(self._remembered) > REMEMBERED:
                self._remembered.popitem(last=False)
        self._unread.discard(queue)
        self._active.discard(queue)
        self._coarse.pop(queue, None)
        self.entries.pop(queue, None)

    async def _read(self, client: RedisLink) -> None:
        """One XREAD of every stream (blocking up to :data:`MAX_BLOCK`), preceded in the
        same round trip by the ends of the streams to check (see :data:`CHECK_ALL`): one
        whose first entry is past where we read was trimmed while we were away (or busy,
        or stopped); one whose last is behind it was made anew."""
        now = time.monotonic()
        until = min(self._next_scan, self._coarse_due if self._coarse else self._next_scan)
        block = max(min(MAX_BLOCK, until - now), 0.001)
        if not self.positions:
            await self._call(client.call("PING"))
            await asyncio.sleep(block)
            return
        prefix = self.prefix
        if now >= self._next_check_all:
            self._next_check_all = now + CHECK_ALL
            checked = [q for q in self.positions if q not in self._unread]
        else:
            checked = [q for q in self._active if q in self.positions]
        self._active = set()
        commands = []
        if checked:
            keys = [stream_key(prefix, q) for q in checked]
            commands.append(command("EVAL", ENDS, len(keys), *keys))
        read = ("XREAD", "COUNT", READ_COUNT, "BLOCK", int(block * 1000), "STREAMS")
        streams = [stream_key(prefix, q) for q in self.positions]
        commands.append(command(*read, *streams, *self.positions.values()))
        client.send_all(commands)
        replies = await self._call(client.replies(len(commands)), extra=block)
        failed = [reply for reply in replies if isinstance(reply, hiredis.ReplyError)]
        if failed:
            if "WRONGTYPE" not in str(failed[0]):
                raise RedisRefused(str(failed[0]))
            await self._drop_wrong_types(client)
            return
        if checked:
            self._check_trimmed(checked, replies[0])
        changes = self._take(replies[-1] or [])
        if self._coarse and time.monotonic() >= self._coarse_due:
            self._coarse_due = time.monotonic() + COARSE_INTERVAL
            for queue, (jobs, last) in self._coarse.items():
                changes += coarse_of(queue, jobs, last)
            self._coarse.clear()
        if changes:
            for change in changes:
                self.by_type[change[0]] += 1
            self._on_events(changes)

    def _take(self, reply: list[Any]) -> list[Change]:
        """The events of one XREAD's entries; each queue that moved owes its coarse pair."""
        head = len(self.prefix) + 1
        changes: list[Change] = []
        now_ms = int(time.time() * 1000)
        lag = 0
        coarse = self._coarse
        for key, entries in reply:
            queue = key[head : -len(b":events")]
            if queue not in self.positions or not entries:
                continue
            entries = [(entry_id, _fields(flat)) for entry_id, flat in entries]
            self.positions[queue] = entries[-1][0]
            self._unread.discard(queue)
            self._active.add(queue)
            self.entries[queue] += len(entries)
            mine = changes_of(queue, entries, max_payload=self.max_payload)
            changes += mine
            jobs = any(change[0] is EventType.SINGLE_JOB_REFRESH for change in mine)
            coarse[queue] = (jobs or coarse.get(queue, (False, b""))[0], entries[-1][0])
            lag = max(lag, now_ms - newest_ms(entries), 0)
        if reply:
            self.lag = lag / 1000
        return changes

    def _check_trimmed(self, queues: list[bytes], ends: list[list[bytes | None]]) -> None:
        """Queues whose unread entries are gone: trimmed past where they were read, or the
        stream deleted and made anew (its last id now behind where it was read: read it
        again from its start). One ``on_gap`` for them all."""
        lost = []
        for queue, (first, last) in zip(queues, ends, strict=True):
            position = self.positions.get(queue)
            if position is None:
                continue
            if last is not None and parse_id(last) < parse_id(position):
                self.positions[queue] = b"0-0"  # a new stream: all of it is news
                self._unread.add(queue)  # (and nothing of it was trimmed past yet)
            elif not trimmed_past(position, first):
                continue
            lost.append(decode_payload(queue))
        if lost:
            log.warning(
                "BullMQ trimmed (or deleted) the events of %d queue(s) past where the bridge "
                "read: %s; clients resync",
                len(lost),
                ", ".join(repr(name) for name in lost[:10]),
            )
            if self._on_gap is not None:
                self._on_gap(lost)


def _fields(flat: list[bytes] | None) -> dict[bytes, bytes]:
    """An entry's fields as Redis sends them (name, value, ...) as a dict (none: empty)."""
    if not flat:
        return {}
    pairs = iter(flat)
    return dict(zip(pairs, pairs, strict=False))
