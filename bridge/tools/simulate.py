"""``bbb-bridge simulate``: publish test events on Redis, as the real publishers do.

Without options it publishes the four test events of the original's script; with
``--count``/``--rate``/``--type``/``--burst`` it is a paced load generator.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from bridge.core.protocol import SEED_EVENTS, EventType, channel_name
from bridge.core.workload import Workload

#: Events per pipeline round trip when publishing as fast as possible.
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to publish: ``count`` units of ``type`` (or the seed cycle), each a burst if asked."""

    count: int
    rate: float = 0.0  # units per second; 0 = as fast as possible
    type: EventType | None = None  # None: cycle through the four seed types
    burst: int = 0  # >0: each unit is job-refresh "1" + `burst` single-job-refresh ids


def plan_events(plan: LoadPlan) -> Iterator[list[tuple[EventType, str]]]:
    """Yield the events of each unit of the plan, in publishing order."""
    seed_cycle = itertools.cycle(t for t, _ in SEED_EVENTS)
    job_ids = itertools.count(1)
    for n in range(plan.count):
        if plan.burst:
            # One database upsert of `burst` jobs, as Better Bull Board's ingest emits it.
            yield [(EventType.JOB_REFRESH, "1")] + [
                (EventType.SINGLE_JOB_REFRESH, f"sim-job-{next(job_ids)}")
                for _ in range(plan.burst)
            ]
        else:
            event_type = plan.type or next(seed_cycle)
            yield [(event_type, f"sim-{n + 1}")]


async def publish_seed(client: aioredis.Redis, prefix: str) -> list[tuple[str, str, int]]:
    """Publish the four seed events; return (channel, payload, receivers) for each."""
    sent = []
    for event_type, payload in SEED_EVENTS:
        channel = channel_name(prefix, event_type)
        receivers = await client.publish(channel, payload)
        sent.append((channel, payload, int(receivers)))
    return sent


async def publish_load(
    client: aioredis.Redis,
    prefix: str,
    plan: LoadPlan,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Publish the plan with pipelined PUBLISHes, paced to ``plan.rate``; return events sent."""
    units = plan_events(plan)
    start = clock()
    done_units = sent = 0
    while done_units < plan.count:
        if plan.rate > 0:
            due = min(plan.count, int((clock() - start) * plan.rate) + 1) - done_units
            if due <= 0:
                await asyncio.sleep(min(0.01, 1 / plan.rate))
                continue
        else:
            due = max(1, CHUNK // (plan.burst + 1))
        pipe = client.pipeline(transaction=False)
        for unit in itertools.islice(units, due):
            for event_type, payload in unit:
                pipe.publish(channel_name(prefix, event_type), payload)
                sent += 1
            done_units += 1
        await pipe.execute()
    return sent


async def run_workload(
    client: aioredis.Redis,
    prefix: str,
    workload: Workload,
    *,
    tick: float = 0.5,  # one database batch per half second, like an ingest poll loop
    seconds: float = 0.0,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Publish the workload's events every ``tick`` until cancelled (or ``seconds`` pass).

    Reads ``workload.rate`` on every tick, so it can be changed while running.
    Returns how many events were published.
    """
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    sent = 0
    while not seconds or last - start < seconds:
        await asyncio.sleep(tick)
        now = loop.time()
        events = workload.step(now - last)
        last = now
        if events:
            pipe = client.pipeline(transaction=False)
            for event_type, payload in events:
                pipe.publish(channel_name(prefix, event_type), payload)
            await pipe.execute()
            sent += len(events)
            if on_batch is not None:
                on_batch(len(events))
    return sent
