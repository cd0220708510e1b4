"""BullMQ's own event streams as the bridge's source: the mapping (pure), then real BullMQ
queues and workers (the Python package) on a real Redis, read by a real bridge."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from bullmq import Queue, Worker
from websockets.asyncio.client import ClientConnection, connect

from bridge.cli import main as bridge_main
from bridge.core.journal import Journal
from bridge.core.protocol import GENERIC, EventType, ResyncReason, parse_frame
from bridge.core.streams import (
    changes_of,
    coarse_of,
    just_before,
    meta_pattern,
    parse_id,
    queue_of_meta,
    trimmed_past,
)
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    BridgeProcess,
    expect_greeting,
    recv_json,
    run_bridge,
    start_bridge,
    wait_for,
)

J, SJ, Q, SQ = (
    EventType.JOB_REFRESH,
    EventType.SINGLE_JOB_REFRESH,
    EventType.QUEUE_REFRESH,
    EventType.SINGLE_QUEUE_REFRESH,
)

# -- the pure part -------------------------------------------------------------------


def test_a_read_becomes_per_job_hints_and_a_queue_its_coarse_pair() -> None:
    """Job events: a single-job-refresh each, in order; queue events a single-queue-refresh.
    Every frame names its queue, BullMQ's event and the entry id. A queue that moved owes
    one job-refresh "1" (if a job changed) and one queue-refresh <queue>: BBB's shape."""
    entries = [
        (b"10-0", {b"event": b"added", b"jobId": b"7", b"name": b"send"}),
        (b"10-1", {b"event": b"completed", b"jobId": b"7", b"returnvalue": b"{}"}),
        (b"11-0", {b"event": b"drained"}),
    ]
    changes = changes_of(b"emails", entries, max_payload=100)
    assert [(t, p, q) for t, p, q, _ in changes] == [
        (SJ, b"7", b"emails"),
        (SJ, b"7", b"emails"),
        (SQ, b"emails", b"emails"),
    ]
    first = json.loads(b"{" + changes[0][3][1:] + b"}")
    assert first == {"queueName": "emails", "event": "added", "streamId": "10-0"}
    assert json.loads(b"{" + changes[2][3][1:] + b"}") == {"event": "drained", "streamId": "11-0"}
    coarse = coarse_of(b"emails", True, b"11-0")
    assert [(t, p, q) for t, p, q, _ in coarse] == [
        (J, GENERIC, b"emails"),
        (Q, b"emails", b"emails"),
    ]
    assert json.loads(b"{" + coarse[0][3][1:] + b"}") == {"queueName": "emails", "streamId": "11-0"}
    assert [t for t, *_ in coarse_of(b"q", False, b"1-0")] == [Q]  # queue events alone
    assert changes_of(b"q", [], max_payload=100) == []


def test_hostile_stream_fields_stay_inside_their_json_strings() -> None:
    """A job id, queue name or event name with quotes, escapes and terminal controls is
    JSON-escaped, never raw in the frame; an oversized job id drops its entry."""
    evil = b'7","x":"\x1b]52;c;aGk=\x07\\'
    changes = changes_of(evil, [(b"1-0", {b"event": evil, b"jobId": evil})], max_payload=100)
    for frame in Journal(size=10, max_age=10).record(changes):
        assert b"\x1b" not in frame and b"\x07" not in frame
        data = json.loads(frame)["data"]
        assert set(data) <= {"jobId", "queueName", "event", "streamId"}
    assert changes_of(b"q", [(b"1-0", {b"jobId": b"x" * 101})], max_payload=100) == []
    odd = changes_of(b"q", [(b"not-an-id", {b"jobId": b"1"})], max_payload=100)
    assert json.loads(b"{" + odd[0][3][1:] + b"}")["streamId"] == "?"


def test_queue_names_from_meta_keys_and_ids() -> None:
    assert queue_of_meta(b"bull", b"bull:a:b:meta") == b"a:b"  # names may hold ':'
    assert queue_of_meta(b"bull", b"bull::meta") is None
    assert queue_of_meta(b"bull", b"other:a:meta") is None
    assert meta_pattern(b"b*[x]") == b"b\\*\\[x\\]:*:meta"
    assert parse_id(b"17-3") == (17, 3)
    with pytest.raises(ValueError):
        parse_id(b"17")
    assert parse_id(just_before(17)) < (17, 0) < parse_id(just_before(18))
    assert just_before(0) == b"0-0"


def test_trimmed_means_the_first_entry_kept_is_past_the_position() -> None:
    assert trimmed_past(b"10-0", b"11-0")
    assert not trimmed_past(b"10-0", b"10-0")
    assert not trimmed_past(b"10-0", b"9-5")
    assert not trimmed_past(b"10-0", None)  # an empty stream lost nothing we had not read


# -- real BullMQ ---------------------------------------------------------------------


@pytest.fixture
def bull() -> str:
    """A BullMQ key prefix of this test's own."""
    return f"bull{uuid.uuid4().hex[:8]}"


def queue(redis_url: str, prefix: str, name: str) -> Any:
    return Queue(name, {"connection": redis_url, "prefix": prefix})


async def process(job: Any, token: str) -> Any:
    """A worker that reports progress, and fails the jobs named 'fail'."""
    await job.updateProgress(50)
    if job.name == "fail":
        raise RuntimeError("boom")
    return {"ok": job.id}


async def stream_bridge(redis_url: str, bull: str, **overrides: object) -> Bridge:
    bridge = await start_bridge(
        redis_url, "unused:", source="bullmq", bullmq_prefix=bull, **overrides
    )
    await bridge.wait_ready(10)
    return bridge


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def entries_since(client: aioredis.Redis, key: str, after: bytes) -> list[Any]:
    """A stream's entries after ``after``: (id, fields) each."""
    entries = cast(list[Any], await client.xrange(key))
    return [e for e in entries if parse_id(e[0]) > parse_id(after)]


async def last_id(client: aioredis.Redis, key: str) -> bytes:
    entries = cast(list[Any], await client.xrevrange(key, count=1))
    return bytes(entries[0][0])


async def frames_until(ws: ClientConnection, done: Any, timeout: float = 20) -> list[Any]:
    """Every event frame until ``done(frames)`` says enough."""
    frames: list[Any] = []
    async with asyncio.timeout(timeout):
        while not done(frames):
            message = await recv_json(ws, timeout)
            if isinstance(message, dict) and "seq" in message:
                frames.append(message)
    return frames


async def test_every_stream_entry_reaches_a_client_in_order(
    redis_server: RedisServer, redis_client: aioredis.Redis, bull: str
) -> None:
    """Real jobs on two queues, a real worker (progress, failures with retries, a delayed
    job): every entry BullMQ wrote after the bridge started reaches the client as its
    frame, in stream order per queue, each with the queue and event; and the coarse
    hints follow."""
    emails, reports = (
        queue(redis_server.url, bull, "emails"),
        queue(redis_server.url, bull, "reports"),
    )
    await emails.add("warm-up", {})  # both queues exist before the bridge
    await reports.add("warm-up", {})
    starts = {
        name: await last_id(redis_client, f"{bull}:{name}:events") for name in ("emails", "reports")
    }
    bridge = await stream_bridge(redis_server.url, bull)
    workers: list[Any] = []
    try:
        async with connect(f"ws://127.0.0.1:{bridge.port}") as ws:
            await expect_greeting(ws)
            for n in range(20):
                await emails.add("fail" if n % 5 == 0 else "send", {"n": n}, {"attempts": 2})
            await reports.add("later", {}, {"delay": 300})
            await reports.add("now", {})
            workers = [
                Worker(name, process, {"connection": redis_server.url, "prefix": bull})
                for name in ("emails", "reports")
            ]

            async def settled() -> bool:
                emails_counts = await emails.getJobCounts("completed", "failed")
                reports_counts = await reports.getJobCounts("completed")
                return bool(sum(emails_counts.values()) == 21 and reports_counts["completed"] == 3)

            await wait_for(settled, 20, what="the jobs to settle")
            expected = {
                name: await entries_since(redis_client, f"{bull}:{name}:events", after)
                for name, after in starts.items()
            }
            total = sum(map(len, expected.values()))

            def all_in(frames: list[Any]) -> bool:
                return sum("event" in f["data"] for f in frames) >= total

            frames = await frames_until(ws, all_in)
    finally:
        for worker in workers:
            await worker.close()
        await emails.close()
        await reports.close()
        await bridge.stop()
    for name, entries in expected.items():
        mine = [f for f in frames if "event" in f["data"] and f["data"].get("queueName") == name]
        got = [(f["data"]["streamId"], f["data"]["event"]) for f in mine]
        assert got == [(i.decode(), fields[b"event"].decode()) for i, fields in entries], name
        for frame in mine:
            if frame["type"] == SJ:
                assert frame["data"]["jobId"]
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs)
    kinds = {(f["type"], f["data"].get("queueName")) for f in frames}
    assert {(J, "emails"), (Q, "emails"), (Q, "reports")} <= kinds


async def test_a_queue_created_after_start_is_found_within_one_rescan(
    redis_server: RedisServer, bull: str
) -> None:
    """A queue that did not exist when the bridge started is found by the next look, and
    read from the bridge's start: its very first event (``added``) is not missed."""
    bridge = await stream_bridge(redis_server.url, bull, rescan=0.5)
    late = queue(redis_server.url, bull, "late")
    try:
        assert bridge.streams is not None and not bridge.streams.positions
        async with connect(f"ws://127.0.0.1:{bridge.port}?queue=late") as ws:
            await expect_greeting(ws)
            job = await late.add("first", {})
            frames = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
        assert [(f["type"], f["data"].get("event")) for f in frames][:2] == [
            (SJ, "added"),
            (SJ, "waiting"),
        ]
        assert frames[0]["data"] == {
            "jobId": job.id,
            "queueName": "late",
            "event": "added",
            "streamId": frames[0]["data"]["streamId"],
        }
    finally:
        await late.close()
        await bridge.stop()


async def test_the_db_in_the_url_is_the_one_read(redis_server: RedisServer, bull: str) -> None:
    """Queues in database 3 are read by a bridge given ``redis://.../3`` (pub/sub has no
    databases; streams do)."""
    url = f"{redis_server.url}/3"
    third = queue(url, bull, "third")
    await third.add("x", {})
    bridge = await stream_bridge(url, bull)
    try:
        assert bridge.streams is not None and set(bridge.streams.positions) == {b"third"}
        async with connect(f"ws://127.0.0.1:{bridge.port}") as ws:
            await expect_greeting(ws)
            job = await third.add("y", {})
            frames = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
        assert frames[0]["data"]["jobId"] == job.id
    finally:
        await third.close()
        await bridge.stop()


async def test_queue_filters_match_every_event_of_a_queue(
    redis_server: RedisServer, bull: str
) -> None:
    """``?queue=`` now drops the job events of other queues too (each names its queue)."""
    a, b = queue(redis_server.url, bull, "a"), queue(redis_server.url, bull, "b")
    await a.add("x", {})
    await b.add("x", {})
    bridge = await stream_bridge(redis_server.url, bull)
    try:
        async with connect(f"ws://127.0.0.1:{bridge.port}?queue=b") as ws:
            await expect_greeting(ws)
            for _ in range(5):
                await a.add("x", {})
            await b.add("x", {})
            frames = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
        assert {f["data"]["queueName"] for f in frames if f["type"] != SQ} == {"b"}
    finally:
        await a.close()
        await b.close()
        await bridge.stop()


async def test_a_queue_whose_events_key_is_not_a_stream_stops_no_other(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    bull: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An events key of another type (there at the start, or made so later) would fail
    every XREAD of every queue: that queue is left out, said once, and the rest flow."""
    good = queue(redis_server.url, bull, "good")
    await good.add("x", {})
    await redis_client.hset(f"{bull}:bad:meta", "x", "1")
    await redis_client.rpush(f"{bull}:bad:events", "not a stream")
    await redis_client.hset(f"{bull}:later:meta", "x", "1")
    await redis_client.xadd(f"{bull}:later:events", {"event": "added", "jobId": "1"})
    bridge = await stream_bridge(redis_server.url, bull)
    try:
        assert bridge.streams is not None
        assert set(bridge.streams.positions) == {b"good", b"later"}
        async with connect(f"ws://127.0.0.1:{bridge.port}?queue=good") as ws:
            await expect_greeting(ws)
            await redis_client.delete(f"{bull}:later:events")
            await redis_client.set(f"{bull}:later:events", "now a string")
            await good.add("y", {})
            frames = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
        assert {f["data"]["queueName"] for f in frames} == {"good"}
        positions = bridge.streams.positions
        await wait_for(lambda: set(positions) == {b"good"}, 5, what="'later' left out")
        said = [r.getMessage() for r in caplog.records if "not a stream" in r.getMessage()]
        assert said == [
            "Not reading queue 'bad': its events key holds a list, not a stream",
            "Not reading queue 'later': its events key holds a string, not a stream",
        ]
    finally:
        await good.close()
        await bridge.stop()


async def test_queues_that_go_and_come_back_are_read_on_not_replayed(
    redis_server: RedisServer, redis_client: aioredis.Redis, bull: str
) -> None:
    """A queue whose meta goes and comes back is read on from where it was (its old
    entries are not sent twice); a named queue whose key was briefly of another type comes
    back at the next look; a name over 256 bytes is left out."""
    for name in ("qa", "qb"):
        await redis_client.hset(f"{bull}:{name}:meta", "x", "1")
        await redis_client.xadd(f"{bull}:{name}:events", {"event": "added", "jobId": "old"})
    await redis_client.hset(f"{bull}:{'x' * 300}:meta", "x", "1")
    found = await stream_bridge(redis_server.url, bull, rescan=0.2)
    named = await stream_bridge(redis_server.url, bull, rescan=0.2, queues=("qb",))
    try:
        assert found.streams is not None and named.streams is not None
        assert set(found.streams.positions) == {b"qa", b"qb"}
        await redis_client.delete(f"{bull}:qa:meta")
        await redis_client.delete(f"{bull}:qb:events")
        await redis_client.set(f"{bull}:qb:events", "briefly a string")
        await wait_for(lambda: b"qa" not in found.streams.positions, 5, what="qa gone")  # type: ignore[union-attr]
        await wait_for(lambda: b"qb" not in named.streams.positions, 5, what="qb left out")  # type: ignore[union-attr]
        await redis_client.hset(f"{bull}:qa:meta", "x", "1")
        await redis_client.delete(f"{bull}:qb:events")
        await wait_for(lambda: b"qa" in found.streams.positions, 5, what="qa back")  # type: ignore[union-attr]
        await wait_for(lambda: b"qb" in named.streams.positions, 5, what="qb back")  # type: ignore[union-attr]
        async with (
            connect(f"ws://127.0.0.1:{found.port}?queue=qa") as qa,
            connect(f"ws://127.0.0.1:{named.port}") as qb,
        ):
            await expect_greeting(qa)
            await expect_greeting(qb)
            await redis_client.xadd(f"{bull}:qa:events", {"event": "added", "jobId": "new"})
            await redis_client.xadd(f"{bull}:qb:events", {"event": "added", "jobId": "new"})
            for ws in (qa, qb):
                frames = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
                assert [f["data"]["jobId"] for f in frames if f["type"] == SJ] == ["new"]
    finally:
        await found.stop()
        await named.stop()


async def test_a_stream_made_anew_behind_where_it_was_read_is_read_again(
    redis_server: RedisServer, redis_client: aioredis.Redis, bull: str
) -> None:
    """A stream read up to a far-future id, then deleted and made anew (its ids now behind
    that): one resync, and the new stream's entries are all read."""
    key = f"{bull}:fut:events"
    await redis_client.hset(f"{bull}:fut:meta", "x", "1")
    await redis_client.xadd(key, {"event": "added", "jobId": "future"}, id="99999999999999-0")
    bridge = await stream_bridge(redis_server.url, bull)
    try:
        async with connect(f"ws://127.0.0.1:{bridge.port}") as ws:
            await expect_greeting(ws)
            await redis_client.delete(key)
            for n in range(3):
                await redis_client.xadd(key, {"event": "added", "jobId": f"j{n}"})
            got: list[str] = []
            resyncs: list[Any] = []
            async with asyncio.timeout(10):
                while len(got) < 3:
                    message = await recv_json(ws, 10)
                    if message["type"] == "resync":
                        resyncs.append(message["data"])
                    elif message["type"] == SJ:
                        got.append(message["data"]["jobId"])
        assert got == ["j0", "j1", "j2"]
        assert resyncs == [{"reason": "stream-trimmed", "queues": ["fut"]}]
    finally:
        await bridge.stop()


async def test_metrics_show_the_queues_entries_and_lag(
    redis_server: RedisServer, bull: str
) -> None:
    a = queue(redis_server.url, bull, "metered")
    await a.add("x", {})
    bridge = await stream_bridge(redis_server.url, bull)
    try:
        await a.add("y", {})
        assert bridge.streams is not None
        await wait_for(lambda: bridge.streams.entries[b"metered"] >= 2, 10, what="entries read")  # type: ignore[union-attr]
        text = bridge.metrics.render().decode()
        assert "bbb_bridge_stream_queues 1.0" in text
        assert 'bbb_bridge_stream_entries_total{queue="metered"} 2.0' in text
        assert "bbb_bridge_stream_lag_seconds" in text
    finally:
        await a.close()
        await bridge.stop()


async def streams_bridge_process(
    processes: list[BridgeProcess], redis_url: str, bull: str
) -> tuple[BridgeProcess, int]:
    """``bbb-bridge --source bullmq`` as a process, reading; and its port."""
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_url,
        "--source", "bullmq", "--bullmq-prefix", bull,
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line("Reading the BullMQ event streams")
    return bridge, port


async def take(ws: ClientConnection, frames: list[Any], controls: list[str]) -> None:
    """One message: an event frame into ``frames``, a control message's type into ``controls``."""
    message = await recv_json(ws, 20)
    if "seq" in message:
        frames.append(message)
    else:
        controls.append(message["type"])


async def test_a_redis_that_refuses_the_reads_keeps_the_bridge_down_not_flapping(
    own_redis: RedisServer, processes: list[BridgeProcess], bull: str
) -> None:
    """A user whose ACL denies XREAD: the bridge says why (NOPERM), once, stays down and
    retries with backoff; clients get no up-and-down for every attempt."""
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "reader", "on", ">secret-pass", "~*", "+@all", "-xread"
        )
        await admin.hset(f"{bull}:q:meta", "x", "1")
    finally:
        await admin.aclose()
    url = f"redis://reader:secret-pass@127.0.0.1:{own_redis.port}"
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--redis-url", url,
        "--source", "bullmq", "--bullmq-prefix", bull,
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line("NOPERM")
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        session = await expect_greeting(ws)
        assert session["redis"] == "down"
        with pytest.raises(TimeoutError):
            message = await recv_json(ws, 3)  # nothing: no redis-up, no redis-down
            raise AssertionError(f"unexpected {message}")
    assert bridge.output.count("NOPERM") == 1  # said once (a line per 30 s at most)
    assert "Reading the BullMQ event streams" not in bridge.output


async def redis_with_aof(tmp_path: Any) -> RedisServer:
    return RedisServer(
        args=("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    ).start()


async def test_a_redis_restart_loses_nothing_and_needs_no_resync(
    tmp_path: Any, processes: list[BridgeProcess], bull: str
) -> None:
    """Redis (with AOF, so the streams survive) killed mid-flow and restarted: the bridge
    reads each stream on from where it was. Every entry arrives once, in order; clients
    get ``redis-down`` then ``redis-up``, and no resync."""
    server = await redis_with_aof(tmp_path)
    client = aioredis.Redis.from_url(server.url)
    producer = queue(server.url, bull, "steady")
    try:
        await producer.add("x", {})
        _, port = await streams_bridge_process(processes, server.url, bull)
        start = await last_id(client, f"{bull}:steady:events")
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await expect_greeting(ws)
            for _ in range(30):
                await producer.add("x", {})
            controls: list[str] = []
            frames: list[Any] = []
            while len(frames) < 10:  # some read before the crash, the rest after
                await take(ws, frames, controls)
            server.kill()
            await producer.close()
            await client.aclose()
            await asyncio.to_thread(server.start)
            client = aioredis.Redis.from_url(server.url)
            producer = queue(server.url, bull, "steady")
            for _ in range(30):
                await producer.add("x", {})
            entries = await entries_since(client, f"{bull}:steady:events", start)
            assert len(entries) == 120  # added and waiting, 60 jobs
            async with asyncio.timeout(20):
                while sum("event" in f["data"] for f in frames) < len(entries):
                    await take(ws, frames, controls)
        got = [f["data"]["streamId"] for f in frames if f["type"] == SJ]
        assert got == [i.decode() for i, _ in entries]
        assert "resync" not in controls
        assert [c for c in controls if c.startswith("redis")] == ["redis-down", "redis-up"]
    finally:
        await producer.close()
        await client.aclose()
        server.stop()


async def test_a_trimmed_gap_gives_exactly_one_resync(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    processes: list[BridgeProcess],
    bull: str,
) -> None:
    """A bridge frozen (SIGSTOP) while its queue's stream is trimmed far past where it had
    read: one ``resync`` with reason ``stream-trimmed``, then the events go on."""
    key = f"{bull}:trim:events"
    await redis_client.hset(f"{bull}:trim:meta", "opts.maxLenEvents", "10000")
    await redis_client.xadd(key, {"event": "added", "jobId": "0"})
    bridge, port = await streams_bridge_process(processes, redis_server.url, bull)
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await expect_greeting(ws)
        await redis_client.xadd(key, {"event": "added", "jobId": "1"})
        first = await frames_until(ws, lambda f: any(x["type"] == Q for x in f), 10)
        assert first[0]["data"]["jobId"] == "1"
        bridge.send_signal(signal.SIGSTOP)
        try:
            pipe = redis_client.pipeline(transaction=False)
            for n in range(2, 3002):
                pipe.xadd(key, {"event": "added", "jobId": str(n)}, maxlen=500, approximate=False)
            await pipe.execute()
        finally:
            bridge.send_signal(signal.SIGCONT)
        await redis_client.xadd(key, {"event": "added", "jobId": "last"})
        resyncs: list[Any] = []
        async with asyncio.timeout(15):
            while True:
                message = await recv_json(ws, 15)
                if message["type"] == "resync":
                    resyncs.append(message["data"])
                if message.get("data", {}).get("jobId") == "last":
                    break
    assert resyncs == [{"reason": ResyncReason.STREAM_TRIMMED.value, "queues": ["trim"]}]


def test_frames_parse_as_events_for_old_clients() -> None:
    """The extensions are extra data fields: a client that reads type and data sees the
    same event it always did."""
    changes = changes_of(b"q", [(b"5-0", {b"event": b"failed", b"jobId": b"9"})], max_payload=9)
    frame = Journal(size=1, max_age=1).record(changes)[0]
    message = parse_frame(frame)
    assert message.type is SJ and message.id == "9"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "argv,said",
    [
        (["--queues", "a"], "--queues names BullMQ queues to read: it needs --source bullmq"),
        (["--source", "bullmq", "--redis-url", "redis://a:1,redis://b:2"], "not a cluster"),
    ],
)
def test_settings_that_cannot_work_together_stop_the_start(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bridge_main(argv, {}) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
