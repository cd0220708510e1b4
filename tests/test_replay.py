"""Gaps are replayed or announced: seq, epoch, session, ``?since=&epoch=`` (issue 6)."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.cache import BASE_KEYS
from bbb_tui.client import ConnState
from bridge.core.backoff import Backoff
from bridge.core.journal import Gap, Journal
from bridge.core.protocol import (
    Change,
    EventType,
    ResumePoint,
    ResyncReason,
    parse_frame,
    parse_resume,
    pubsub_change,
    with_resume,
)
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    SUBSCRIBE_TIMEOUT,
    Publisher,
    expect_greeting,
    messages_until,
    recv_json,
    start_bridge,
    wait_for,
)

JOB = EventType.SINGLE_JOB_REFRESH

# -- the journal, as a pure unit ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def events(*ids: str) -> list[Change]:
    return [pubsub_change(JOB, i.encode()) for i in ids]


def ids(frames: list[bytes] | Gap) -> list[tuple[str, int | None]]:
    assert isinstance(frames, list), frames
    parsed = [parse_frame(f) for f in frames]
    return [(m.id, m.seq) for m in parsed]  # type: ignore[union-attr]


def test_events_are_numbered_from_one_without_gaps() -> None:
    """Events are numbered 1, 2, 3... across batches."""
    journal = Journal(size=10, max_age=60, epoch="e")
    assert ids(journal.record(events("a", "b"))) == [("a", 1), ("b", 2)]
    assert ids(journal.record(events("c"))) == [("c", 3)]
    assert journal.seq == 3


def test_missed_events_are_replayed_exactly() -> None:
    """Resuming from seq n gives exactly the frames after n (none from n itself or before)."""
    journal = Journal(size=10, max_age=60, epoch="e")
    journal.record(events("a", "b", "c", "d"))
    assert ids(journal.missed(ResumePoint(1, "e"))) == [("b", 2), ("c", 3), ("d", 4)]
    assert journal.missed(ResumePoint(4, "e")) == []
    assert ids(journal.missed(ResumePoint(0, "e"))) == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]


@pytest.mark.parametrize(
    "point,reason",
    [
        (ResumePoint(2, "other"), "epoch-changed"),  # another bridge run
        (ResumePoint(9, "e"), "unknown-seq"),  # ahead of this bridge
        (ResumePoint(1, "e"), "replay-unavailable"),  # 2 is no longer kept (size 3)
    ],
)
def test_what_cannot_be_replayed_is_a_gap(point: ResumePoint, reason: str) -> None:
    """Another epoch, a seq ahead, or events no longer kept: a Gap with the reason."""
    journal = Journal(size=3, max_age=60, epoch="e")
    journal.record(events("a", "b", "c", "d", "e"))
    gap = journal.missed(point)
    assert isinstance(gap, Gap) and gap.reason == reason
    assert ids(journal.missed(ResumePoint(2, "e"))) == [("c", 3), ("d", 4), ("e", 5)]


def test_events_older_than_max_age_are_forgotten() -> None:
    """Events older than max_age are not replayed; being up to date still is fine."""
    clock = FakeClock()
    journal = Journal(size=100, max_age=10, clock=clock, epoch="e")
    journal.record(events("old"))
    clock.now = 6
    journal.record(events("new"))
    clock.now = 12  # "old" is 12 s old, "new" 6 s
    assert ids(journal.missed(ResumePoint(1, "e"))) == [("new", 2)]
    assert isinstance(journal.missed(ResumePoint(0, "e")), Gap)
    clock.now = 17
    assert journal.missed(ResumePoint(2, "e")) == []  # nothing missed: still fine
    assert isinstance(journal.missed(ResumePoint(1, "e")), Gap)


def test_a_redis_gap_is_announced_to_whoever_was_away_across_it() -> None:
    """A client away across a Redis gap gets a Gap, one that came back after it gets the replay."""
    journal = Journal(size=100, max_age=60, epoch="e")
    journal.record(events("a", "b"))
    journal.mark_gap()  # Redis lost after event 2
    journal.record(events("c"))
    for since in (0, 1, 2):  # away when the resync was broadcast
        gap = journal.missed(ResumePoint(since, "e"))
        assert isinstance(gap, Gap) and gap.reason == "redis-reconnected"
    assert ids(journal.missed(ResumePoint(3, "e"))) == []  # saw the resync's successor


def test_the_ring_is_bounded_in_bytes_too() -> None:
    """Big payloads: whole batches are forgotten once the frames pass max_bytes."""
    journal = Journal(size=1000, max_age=60, max_bytes=1100, epoch="e")
    for i in range(10):  # 357 bytes a frame, one per batch: 3 fit
        journal.record([pubsub_change(JOB, b"%d" % i * 300)])
    assert journal.first_seq == 8
    assert ids(journal.missed(ResumePoint(7, "e")))[0][1] == 8
    assert isinstance(journal.missed(ResumePoint(6, "e")), Gap)
    journal.record(
        [pubsub_change(JOB, b"y" * 5000)]
    )  # bigger than the bound on its own: nothing kept
    assert journal.first_seq == journal.seq + 1


def test_size_zero_numbers_but_keeps_nothing() -> None:
    """--replay-size 0 still numbers events, but anyone behind gets a Gap."""
    journal = Journal(size=0, max_age=60, epoch="e")
    assert ids(journal.record(events("a"))) == [("a", 1)]
    assert journal.missed(ResumePoint(1, "e")) == []
    assert isinstance(journal.missed(ResumePoint(0, "e")), Gap)


def test_resume_query_round_trip_and_errors() -> None:
    """since/epoch survive a URL round trip next to other parameters; bad ones raise ValueError."""
    url = with_resume("ws://h:1/?token=t", ResumePoint(7, "ab-1"))
    assert url == "ws://h:1/?token=t&since=7&epoch=ab-1"
    assert parse_resume(url.split("?", 1)[1]) == ResumePoint(7, "ab-1")
    assert parse_resume("token=t") is None
    for bad in ("since=7", "epoch=e", "since=-1&epoch=e", "since=x&epoch=e", "since=1e9&epoch=e"):
        with pytest.raises(ValueError):
            parse_resume(bad)


# -- a real bridge -------------------------------------------------------------------


def url(bridge: Bridge, query: str = "") -> str:
    return f"ws://127.0.0.1:{bridge.port}/{query}"


async def test_a_client_that_comes_back_gets_exactly_what_it_missed(
    bridge: Bridge, publish: Publisher
) -> None:
    """Reconnecting with since/epoch under a steady stream: no event lost or repeated."""
    async with connect(url(bridge)) as ws:
        session = await expect_greeting(ws)
        for i in range(5):
            await publish(JOB, f"before-{i}")
        seen = [await recv_json(ws) for _ in range(5)]
    last_seq = seen[-1]["seq"]
    assert [m["seq"] for m in seen] == list(range(session["seq"] + 1, last_seq + 1))

    stop = asyncio.Event()

    async def stream() -> int:  # keeps publishing across the reconnect: the seam under load
        n = 0
        while not stop.is_set():
            await publish(JOB, f"during-{n}")
            n += 1
        await publish(JOB, "end")
        return n

    publisher = asyncio.create_task(stream())
    await wait_for(lambda: bridge.journal.seq >= last_seq + 20, what="events missed meanwhile")
    async with connect(url(bridge, f"?since={last_seq}&epoch={session['epoch']}")) as ws:
        await expect_greeting(ws)
        await asyncio.sleep(0.05)  # a few live events after the replayed ones
        stop.set()
        count = await publisher
        received = await messages_until(ws, "end")
    assert [m["type"] for m in received] == ["single-job-refresh"] * (count + 1)
    assert [m["data"]["jobId"] for m in received] == [f"during-{n}" for n in range(count)] + ["end"]
    assert [m["seq"] for m in received] == list(range(last_seq + 1, last_seq + count + 2))


@pytest.mark.parametrize(
    "query,reason",
    [
        ("?since=0&epoch=some-other-run", "epoch-changed"),
        ("?since=999999&epoch={epoch}", "unknown-seq"),
    ],
)
async def test_a_resume_point_that_cannot_be_replayed_gets_a_resync(
    bridge: Bridge, query: str, reason: str
) -> None:
    """Another epoch or an unknown seq: session, then one resync, then live events."""
    async with connect(url(bridge, query.format(epoch=bridge.journal.epoch))) as ws:
        await expect_greeting(ws)
        resync = await recv_json(ws)
        assert (resync["type"], resync["data"]["reason"]) == ("resync", reason)


async def test_events_no_longer_kept_get_a_resync(
    redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """With --replay-size 3, a client 5 events behind is told to refetch, not replayed."""
    bridge = await start_bridge(redis_server.url, prefix, replay_size=3)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        for i in range(5):
            await publish(JOB, str(i))
        await wait_for(lambda: bridge.journal.seq == 5, what="5 events")
        async with connect(url(bridge, f"?since=0&epoch={bridge.journal.epoch}")) as ws:
            assert (await expect_greeting(ws))["seq"] == 5
            resync = await recv_json(ws)
            assert resync == {
                "type": "resync",
                "data": {"reason": "replay-unavailable", "oldest": 3},
            }
    finally:
        await bridge.stop()


@pytest.mark.parametrize("query", ["?since=abc&epoch=e", "?since=5", "?epoch=e"])
async def test_a_malformed_resume_point_is_refused_with_400(bridge: Bridge, query: str) -> None:
    """A bad since/epoch is an HTTP 400 with the reason, before any frame."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(bridge, query))
    assert refused.value.response.status_code == 400
    assert b"since" in refused.value.response.body


async def test_the_tui_resumes_and_counts_what_was_replayed(
    bridge: Bridge, redis_server: RedisServer, prefix: str, publish: Publisher
) -> None:
    """The TUI reconnects with since/epoch: missed events replayed, no refetch, none twice."""
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{bridge.port}", redis_url=redis_server.url, prefix=prefix
    )
    app = BbbApp(settings)
    app.client.backoff = Backoff(base=0.5, cap=0.5, floor=0.5, rand=lambda: 1.0)
    async with app.run_test(size=(120, 40)):
        await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10, what="connected")
        for i in range(3):
            await publish(JOB, f"live-{i}")
        await wait_for(lambda: app.monitor.events == 3, what="3 live events")
        before = {k: app.cache.queries[k].invalidations for k in BASE_KEYS}
        for connection in list(bridge.hub):
            connection.abort()  # the network drops; the TUI retries in 0.5 s
        await wait_for(lambda: app.status.state is ConnState.RECONNECTING, what="reconnecting")
        pipe = publish.client.pipeline(transaction=False)
        for i in range(20):
            pipe.publish(publish.channel(JOB), f"missed-{i}")
        await pipe.execute()
        await wait_for(lambda: bridge.journal.seq == 23, what="the bridge to have them")
        assert app.status.state is ConnState.RECONNECTING  # so all 20 were missed
        await wait_for(lambda: app.monitor.replayed == 20, 10, what="20 events replayed")
        assert app.monitor.events == 23
        assert app.monitor.resyncs == 0
        assert app.monitor.position.last_seq == 23
        # No refetch of everything: the replayed events were all it took.
        assert {k: app.cache.queries[k].invalidations for k in BASE_KEYS} == before
        lines = "\n".join(entry[1] for entry in app.monitor.entries)
        assert "replayed 20 event(s) missed while disconnected (seq 4-23)" in lines


def test_frames_with_seq_stay_what_the_web_client_reads() -> None:
    """The web client reads type and data; seq is one more top-level key (PROTOCOL.md 2)."""
    journal = Journal(size=1, max_age=1, epoch="e")
    (frame,) = journal.record([pubsub_change(EventType.JOB_REFRESH, b"job-1")])
    assert json.loads(frame) == {"type": "job-refresh", "data": {"jobId": "job-1"}, "seq": 1}


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("record"), st.lists(st.binary(max_size=40), min_size=1, max_size=5)),
            st.tuples(st.just("gap"), st.just([])),
            st.tuples(st.just("wait"), st.just([])),
        ),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=100, max_value=2000),
)
def test_a_replay_is_exactly_what_came_after_or_a_gap(
    steps: list[tuple[str, list[bytes]]], size: int, max_bytes: int
) -> None:
    """Whatever happened, resuming from any seq gives exactly the frames after it, or a Gap
    (never a frame twice, never one missing); and a Gap only when it must be one."""
    clock = FakeClock()
    journal = Journal(size=size, max_age=5, max_bytes=max_bytes, clock=clock, epoch="e")
    everything: list[bytes] = []  # every frame ever, in order: seq n is everything[n - 1]
    gaps: list[int] = []
    for action, payloads in steps:
        if action == "record":
            everything += journal.record([pubsub_change(JOB, p) for p in payloads])
        elif action == "gap":
            journal.mark_gap()
            gaps.append(journal.seq)
        else:
            clock.now += 2
    assert journal.seq == len(everything)
    for since in range(journal.seq + 1):
        result = journal.missed(ResumePoint(since, "e"))
        if isinstance(result, list):
            assert result == everything[since:]
            assert not any(g >= since for g in gaps)  # a Redis gap since then is never hidden
            assert len(result) <= size or since == journal.seq
        else:
            assert result.reason in ("redis-reconnected", "replay-unavailable")
    assert journal.missed(ResumePoint(journal.seq, "e")) in (
        [],
        Gap(ResyncReason.REDIS_RECONNECTED, {}),
    )
