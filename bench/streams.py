"""BullMQ streams benchmark: 50 queues' event streams -> bridge -> 100 WebSocket clients.

    python -m bench.streams [--queues 50] [--clients 100] [--rate 10000] [--seconds 5]

For each target - this bridge (``--source bullmq``) and the naive baseline (one
``bullmq.QueueEvents`` per queue rebroadcasting each event, ``bench/naive_streams.py``) -
on a private redis-server, with the fan-out benchmark's byte-counting clients:

- fixed rate: ``--rate`` stream entries a second spread over the queues (XADD, trimmed
  like BullMQ's ``MAXLEN ~ 10000``), for ``--seconds``: latency p50/p99 from the entry's
  creation to its receipt (a probe client reads the creation time carried in the job
  id), the target's CPU per 1,000 entries, and entries not delivered to every client;
- max rate: entries written as fast as one pipelined writer can, entries/s delivered to
  every client (entries x clients received / time to the last one).

Ratios inside one run are what count: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import hiredis
import redis.asyncio as aioredis

from bench.fanout import Clients, stamp, start_clients, until_quiet
from bench.groups import cpu_seconds
from bench.machine import ROOT, describe
from bridge.sources.resp import command
from bridge.tools.embedded import RedisServer, free_port

PREFIX = "bench"


def queue_names(n: int) -> list[str]:
    return [f"q{i:02d}" for i in range(n)]


async def create_queues(client: aioredis.Redis, queues: list[str]) -> None:
    """What BullMQ leaves: a meta hash and an events stream per queue."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.hset(f"{PREFIX}:{queue}:meta", "opts.maxLenEvents", "10000")
        pipe.xadd(f"{PREFIX}:{queue}:events", {"event": "drained"})
    await pipe.execute()


def xadd(key: str) -> bytes:
    """A job's ``completed`` entry, as BullMQ writes it (trimmed), stamped with the time."""
    fields = ("event", "completed", "jobId", stamp())
    return command("XADD", key, "MAXLEN", "~", "10000", "*", *fields)


async def write(redis_port: int, queues: list[str], count: int, rate: float) -> None:
    """``count`` job entries over the queues, ``rate`` a second (0: as fast as possible),
    written as raw RESP on one connection: redis-py would cost more CPU than the bridge."""
    keys = [f"{PREFIX}:{queue}:events" for queue in queues]
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_port)

    async def answers() -> None:
        replies, answered = hiredis.Reader(), 0
        while answered < count:
            replies.feed(await reader.read(1 << 20))
            while replies.gets() is not False:
                answered += 1

    draining = asyncio.create_task(answers())
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    try:
        while sent < count:
            due = count if rate == 0 else min(count, int((loop.time() - start) * rate))
            batch = min(due - sent, 5000)
            if batch > 0:
                writer.write(b"".join(xadd(keys[(sent + n) % len(keys)]) for n in range(batch)))
                sent += batch
                await writer.drain()
            if rate:
                await asyncio.sleep(0.002)
        await draining
    finally:
        draining.cancel()
        writer.close()


async def start_target(target: str, redis_url: str, queues: int) -> tuple[Any, int]:
    port = free_port()
    if target == "bridge":
        args = ["-m", "bridge", "--host", "127.0.0.1", "--port", str(port), "--redis-url",
                redis_url, "--source", "bullmq", "--bullmq-prefix", PREFIX,
                "--log-level", "warning"]  # fmt: skip
    else:
        args = ["-m", "bench.naive_streams", "--port", str(port), "--redis-url", redis_url,
                "--prefix", PREFIX, "--queues", str(queues)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )
    return process, port


async def warmed(redis_port: int, clients: Clients, queues: list[str], n: int) -> None:
    """Every client receives entries of every queue: the target reads them all."""
    for _ in range(100):
        await clients.command("reset")
        await write(redis_port, queues, len(queues), 0)
        report, _ = await until_quiet(clients, len(queues) * n, timeout=2)
        if report["min"] >= len(queues):
            return
    raise RuntimeError("the target never delivered the warm-up entries")


async def scenario(target: str, q: int, n: int, rate: float, seconds: float) -> dict[str, Any]:
    queues = queue_names(q)
    with RedisServer() as redis_server:
        client = aioredis.Redis.from_url(redis_server.url)
        await create_queues(client, queues)
        process, port = await start_target(target, redis_server.url, q)
        clients: Clients | None = None
        try:
            await asyncio.sleep(1.0)  # listening
            clients = await start_clients("bridge", port, n)
            await warmed(redis_server.port, clients, queues, n)
            row: dict[str, Any] = {"target": target, "queues": q, "clients": n}
            total = int(rate * seconds)
            await clients.command("reset")
            cpu = cpu_seconds(process.pid)
            await write(redis_server.port, queues, total, rate)
            report, _ = await until_quiet(clients, total * n, timeout=10)
            row["cpu_ms_per_1000"] = (cpu_seconds(process.pid) - cpu) * 1e6 / total
            row["fixed_loss"] = total * n - report["total"]
            row.update({k: report[k] for k in ("p50", "p99")})
            events = 50_000 if target == "bridge" else 10_000
            await clients.command("reset")
            start = asyncio.get_running_loop().time()
            await write(redis_server.port, queues, events, 0)
            report, done = await until_quiet(clients, events * n, timeout=60)
            elapsed = max(done - start, 1e-6)
            row["max_entries_s"] = report["min"] / elapsed
            row["max_loss"] = events * n - report["total"]
            return row
        finally:
            if clients is not None:
                await clients.close()
            await client.aclose()
            process.kill()
            await process.wait()


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| target | queues | clients | fixed rate: p50 / p99 ms | CPU ms per 1,000 entries "
        "| not delivered | max rate: entries/s to every client |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat = " / ".join(f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("p50", "p99"))
        out.append(
            f"| {r['target']} | {r['queues']} | {r['clients']} | {lat} "
            f"| {r['cpu_ms_per_1000']:.0f} | {r['fixed_loss']:,} | {r['max_entries_s']:,.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--targets", nargs="+", default=["naive", "bridge"])
    args = parser.parse_args()
    print(f"machine: {describe()}")
    rows = []
    for target in args.targets:
        row = asyncio.run(scenario(target, args.queues, args.clients, args.rate, args.seconds))
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
