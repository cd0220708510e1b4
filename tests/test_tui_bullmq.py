"""bbb-tui on real BullMQ data (``--data bullmq``): the pure parts, then Pilot against a
bridge reading BullMQ's streams, real queues and a real worker on a real Redis."""

from __future__ import annotations

import io
import re
import uuid
from collections import deque
from typing import Any

import pytest
import redis.asyncio
from bullmq import Queue, Worker
from rich.console import Console
from textual.widgets import Static

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.bullmq_data import BullmqData, JobDetails, JobSummary, has_queues
from bbb_tui.cache import QueryCache, QueryStatus
from bbb_tui.cli import choose_data
from bbb_tui.client import ConnState
from bbb_tui.queue_stats import QueueCounts, QueueStats, percentile, queue_rows
from bbb_tui.widgets.bullmq import JobScreen, JobsView, QueuesView, job_fields
from bridge.core.protocol import Event, EventType
from bridge.tools.embedded import RedisServer
from tests.helpers import start_bridge, wait_for

SJ = EventType.SINGLE_JOB_REFRESH

# -- the pure parts -----------------------------------------------------------------


def stream_event(queue: str, job: str, event: str, ms: int) -> Event:
    data = {"jobId": job, "queueName": queue, "event": event, "streamId": f"{ms}-0"}
    return Event(SJ, job, data)


def test_waits_runs_and_rates_come_from_the_events_times() -> None:
    """Wait is added/waiting to active, run is active to completed/failed, both from the
    entries' own times; completed and failed count over the last minute."""
    stats = QueueStats()
    for n in range(10):
        start = 1_000_000 + n * 1000
        stats.apply(stream_event("q", str(n), "added", start))
        stats.apply(stream_event("q", str(n), "waiting", start))
        stats.apply(stream_event("q", str(n), "active", start + 10 * (n + 1)))
        done = "failed" if n == 9 else "completed"
        stats.apply(stream_event("q", str(n), done, start + 10 * (n + 1) + 100))
    stats.apply(stream_event("q", "x", "stalled", 1_020_000))
    stats.apply(stream_event("q", "y", "retries-exhausted", 1_020_000))
    activity = stats.activity("q")
    assert sorted(activity.waits) == [10 * (n + 1) for n in range(10)]
    assert set(activity.runs) == {100}
    assert activity.per_minute(1_020_000) == (9, 1)
    assert activity.per_minute(1_000_000 + 60_000 + 5_000) == (4, 1)  # the oldest aged out
    assert (activity.stalled, activity.exhausted) == (1, 1)
    assert stats.jobs_queue["3"] == "q"
    counts = {"q": QueueCounts({"waiting": 5, "active": 1}, False)}
    (row,) = queue_rows(counts, stats, {"q": QueueCounts({"waiting": 2}, False)}, 1_020_000)
    assert row.growing and row.alarming and row.wait_p50 == 60 and row.run_p95 == 100


def test_published_hints_and_odd_data_are_only_counted() -> None:
    stats = QueueStats()
    stats.apply(Event(SJ, "7", {"jobId": "7"}))  # a published hint: no queue, no time
    stats.apply(Event(SJ, "7", {"jobId": "7", "queueName": "q", "event": 5, "streamId": "1-0"}))
    stats.apply(stream_event("q", "7", "active", 0)._replace(data={"streamId": "x-0"}))
    assert not stats.queues
    assert percentile(deque(), 0.5) is None


def test_a_superseded_fetch_answers_nothing() -> None:
    """Real fetches: the answer of a fetch that a newer invalidation restarted is dropped."""
    cache = QueryCache(latency=None)
    cache.mount(0.0)
    key = ("jobs/table",)
    started = dict(cache.fetching())[key]
    cache.handle(Event(EventType.JOB_REFRESH, "1", {}), 1.0)  # restarts jobs/table
    assert not cache.complete(key, started, "old", 1.5)
    restarted = dict(cache.fetching())[key]
    assert cache.complete(key, restarted, "new", 2.0)
    query = cache.queries[key]
    assert (query.status, query.data, query.last_duration) == (QueryStatus.FRESH, "new", 1.0)
    cache.tick(10.0)  # no simulated latency completes anything
    assert len(cache.fetching()) == 3


def test_the_job_screen_shows_odd_values_bounded() -> None:
    """A time no calendar holds, and a 5 MB payload: shown, cut, without raising."""
    summary = JobSummary("1", "q", "n", "completed", 1, 10**20)
    details = JobDetails(summary, "x" * 5_000_000, "{}", "0", "null", "", [], 10**20, None, [])
    fields = dict(job_fields(details))
    assert fields["added"].plain == f"{10**20} ms"
    assert len(fields["data"].plain) < 30_000 and "more characters" in fields["data"].plain


def test_the_job_screen_shows_hostile_values_as_text() -> None:
    evil = "\x1b]52;c;aGk=\x07name\x1b[2J"
    summary = JobSummary(evil, evil, evil, "failed", 2, 1_000)
    details = JobDetails(
        summary, evil, "{}", "0", "null", evil, [evil + "\nline 2"], 1_000, 2_000, [evil]
    )
    text = "\n".join(label + " " + value.plain for label, value in job_fields(details))
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b" in text and "line 2" in text


# -- real BullMQ ---------------------------------------------------------------------


@pytest.fixture
def bull() -> str:
    return f"bull{uuid.uuid4().hex[:8]}"


async def process(job: Any, token: str) -> Any:
    await job.log(f"working on {job.name}")
    if job.name == "fail":
        raise RuntimeError("it broke")
    return "ok"


async def test_auto_picks_bullmq_only_where_queues_exist(
    redis_server: RedisServer, bull: str
) -> None:
    settings = TuiSettings(redis_url=redis_server.url, data="auto", bullmq_prefix=bull)
    assert (await choose_data(settings)).data == "simulated"
    queue = Queue("here", {"connection": redis_server.url, "prefix": bull})
    await queue.add("x", {})
    await queue.close()
    assert await has_queues(redis_server.url, bull)
    assert (await choose_data(settings)).data == "bullmq"
    assert not await has_queues("redis://127.0.0.1:1", bull, timeout=0.5)  # no Redis: no


def expected_row(name: str, counts: dict[str, int]) -> list[str]:
    """The first six cells of a queue's row: name, then waiting to completed."""
    states = ("waiting", "active", "delayed", "failed", "completed")
    return [name, *(f"{counts[state]:,}" for state in states)]


def view_text(view: Any) -> str:
    rows = [view.get_row_at(n) for n in range(view.row_count)]
    return "\n".join(" ".join(cell.plain for cell in row) for row in rows)


async def test_the_views_show_what_bullmq_holds(redis_server: RedisServer, bull: str) -> None:
    """Real jobs, a real worker, a bridge reading the streams: once the jobs settle, the
    queues view's counts equal getJobCounts, the jobs view lists them, and Enter on a
    failed one opens it with its reason and logs. The TUI writes nothing."""
    url = redis_server.url
    queues = {name: Queue(name, {"connection": url, "prefix": bull}) for name in ("mail", "pdf")}
    await queues["mail"].add("warm-up", {})
    bridge = await start_bridge(url, "unused:", source="bullmq", bullmq_prefix=bull)
    await bridge.wait_ready(10)
    settings = TuiSettings(
        url=f"ws://127.0.0.1:{bridge.port}", redis_url=url, data="bullmq", bullmq_prefix=bull
    )
    app = BbbApp(settings)
    worker = None
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10, what="connected")
            for n in range(6):
                await queues["mail"].add("fail" if n == 0 else "send", {"n": n})
            await queues["pdf"].add("render", {"pages": 3})
            worker = Worker("mail", process, {"connection": url, "prefix": bull})

            async def settled() -> bool:
                counts = await queues["mail"].getJobCounts("completed", "failed")
                return bool(counts["completed"] == 6 and counts["failed"] == 1)

            await wait_for(settled, 15, what="the mail jobs to settle")
            expected = {name: await q.getJobCounts() for name, q in queues.items()}
            view = app.query_one(QueuesView)

            def matches() -> bool:
                lines = [line.split()[:6] for line in view_text(view).splitlines()]
                return all(expected_row(name, c) in lines for name, c in expected.items())

            await wait_for(matches, 15, what=f"the queues view to show {expected}")
            await pilot.press("v")
            jobs = app.query_one(JobsView)
            await wait_for(lambda: "fail" in view_text(jobs), 10, what="the failed job listed")
            failed = next(
                n for n in range(jobs.row_count) if "fail" in view_text(jobs).splitlines()[n]
            )
            jobs.move_cursor(row=failed)
            await pilot.press("enter")
            await wait_for(lambda: isinstance(app.screen, JobScreen), 5, what="the job screen")

            def shown() -> str:
                console = Console(width=120, file=io.StringIO(), record=True)
                console.print(app.screen.query_one("#job-body", Static).content)
                return console.export_text()

            await wait_for(lambda: "it broke" in shown(), 10, what="the failed reason")
            assert "working on fail" in shown()
            assert re.search(r"state +failed", shown())
    finally:
        if worker is not None:
            await worker.close()
        for q in queues.values():
            await q.close()
        await bridge.stop()


async def test_counts_read_in_one_round_trip_match_bullmq(
    redis_server: RedisServer, bull: str
) -> None:
    """The pipelined counts agree with bullmq's own getJobCounts, paused included."""
    queue = Queue("c", {"connection": redis_server.url, "prefix": bull})
    for n in range(3):
        await queue.add("x", {"n": n})
    await queue.add("later", {}, {"delay": 60_000})
    await queue.pause()
    data = BullmqData(redis_url=redis_server.url, prefix=bull)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        assert await data.queue_names() == ["c"]
        # Keys of other types, and a name too long to show, hide no other queue's data.
        await raw.set(f"{bull}:odd:meta", "a string")
        await raw.set(f"{bull}:odd:wait", "a string")
        await raw.hset(f"{bull}:{'x' * 300}:meta", "k", "v")
        assert await data.queue_names() == ["c", "odd"]
        assert (await data.counts(["odd"]))["odd"].backlog == 0
        assert len(await data.latest_jobs(["c", "odd"])) == 4
        counts = (await data.counts(["c"]))["c"]
        theirs = await queue.getJobCounts()
        assert counts.paused
        assert {k: counts.counts[k] for k in ("delayed", "active", "completed", "failed")} == {
            k: theirs[k] for k in ("delayed", "active", "completed", "failed")
        }
        assert counts.counts["waiting"] == theirs["waiting"] + theirs.get("paused", 0) == 3
        latest = await data.latest_jobs(["c"])
        assert sorted((j.name, j.state) for j in latest) == [
            ("later", "delayed"), ("x", "waiting"), ("x", "waiting"), ("x", "waiting"),
        ]  # fmt: skip
    finally:
        await queue.close()
        await data.aclose()
        await raw.aclose()
