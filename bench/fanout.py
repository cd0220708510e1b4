"""Fan-out benchmark: Redis -> bridge -> many WebSocket clients, against two references.

    python -m bench.fanout [--clients 1 100 1000] [--quick]

For each target - raw Redis fan-out (clients SUBSCRIBE directly), the naive bridge
(redis-py PubSub + websockets.broadcast, ``bench/naive_bridge.py``) and this bridge -
on a private redis-server, with cheap byte-counting clients in another process:

- max rate: publish as fast as one pipelined publisher can, report deliveries/s
  (messages received by all clients / time until the last one arrived) and loss;
- fixed rate: 1,000 events/s for a few seconds, report latency p50/p95/p99 (publish
  to receipt, measured by a probe client) and what had not arrived 5 s after the end
  (skipped for a target that could not even drain the max-rate run).

Ratios inside one run are what count: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis

from bench.machine import ROOT, describe
from bridge.core.protocol import DEFAULT_PREFIX, EventType, channel_name
from bridge.sources.resp import command
from bridge.tools.embedded import RedisServer, free_port

CHANNEL = channel_name(DEFAULT_PREFIX, EventType.SINGLE_JOB_REFRESH)
STAMP_DIGITS = 20


def stamp() -> str:
    return f"{time.monotonic_ns():0{STAMP_DIGITS}d}"


@dataclass
class Clients:
    """The client process: N counting connections and a probe."""

    process: asyncio.subprocess.Process

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return (await self.process.stdout.readline()).decode()

    async def report(self) -> dict[str, Any]:
        return dict(json.loads(await self.command("report")))

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def start_clients(target: str, port: int, n: int, *, queue_each: bool = False) -> Clients:
    if target == "redis":
        args = ["redis", "--port", str(port), "--channel", CHANNEL]
    else:
        args = ["ws", "--url", f"ws://127.0.0.1:{port}", *(["--queue-each"] if queue_each else [])]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.clients", *args, "--clients", str(n),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"clients failed to start: {line!r}")
    return Clients(process)


async def start_target(
    target: str, redis_url: str
) -> tuple[asyncio.subprocess.Process | None, int]:
    if target == "redis":
        return None, int(redis_url.rsplit(":", 1)[1])
    port = free_port()
    module = "bench.naive_bridge" if target == "naive" else "bridge"
    extra = [] if target == "naive" else ["serve", "--host", "127.0.0.1", "--log-level", "warning"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *extra, "--port", str(port), "--redis-url", redis_url,
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    client = aioredis.Redis.from_url(redis_url)
    try:  # subscribed once a PUBLISH reaches one subscriber
        for _ in range(200):
            if await client.publish(CHANNEL, "warm-up: nobody is connected yet"):
                break
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    return process, port


async def until_quiet(
    clients: Clients, expected: int, timeout: float
) -> tuple[dict[str, Any], float]:
    """Poll until every client has everything, or nothing moves for a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_total, last_change = -1, loop.time()
    while True:
        report = await clients.report()
        now = loop.time()
        if report["total"] != last_total:
            last_total, last_change = report["total"], now
        if report["total"] >= expected or now - last_change > 1.0 or now > deadline:
            return report, last_change
        await asyncio.sleep(0.01)


async def blast(redis_port: int, events: int) -> None:
    """PUBLISH ``events`` times as fast as Redis takes them: one prebuilt RESP stream.

    (A redis-py pipeline tops out near 40,000 PUBLISH/s here: slower than the bridge.)
    """
    stream = command("PUBLISH", CHANNEL, "0" * STAMP_DIGITS) * events
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_port)
    writer.write(stream)
    await writer.drain()
    replies = hiredis.Reader()
    got = 0
    while got < events:
        replies.feed(await reader.read(1 << 20))
        while replies.gets() is not False:
            got += 1
    writer.close()


async def max_rate(redis_port: int, clients: Clients, n: int, events: int) -> dict[str, Any]:
    await clients.command("reset")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await blast(redis_port, events)
    report, done = await until_quiet(clients, events * n, timeout=60)
    elapsed = max(done - start, 1e-6)
    return {"deliveries_s": report["total"] / elapsed, "loss": events * n - report["total"]}


async def fixed_rate(
    client: aioredis.Redis, clients: Clients, n: int, rate: int, seconds: float
) -> dict[str, Any]:
    await clients.command("reset")
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((loop.time() - start) * rate)) - sent
        if due > 0:
            pipe = client.pipeline(transaction=False)
            for _ in range(due):
                pipe.publish(CHANNEL, stamp())
            await pipe.execute()
            sent += due
        await asyncio.sleep(0.005)
    report, _ = await until_quiet(clients, total * n, timeout=5)
    return {"loss": total * n - report["total"], **{k: report[k] for k in ("p50", "p95", "p99")}}


async def scenario(target: str, n: int, deliveries: int, seconds: float) -> dict[str, Any]:
    """One target, n clients, fresh processes: max rate, then a fixed rate after a pause."""
    with RedisServer() as redis_server:
        process, port = await start_target(target, redis_server.url)
        client = aioredis.Redis.from_url(redis_server.url)
        clients = await start_clients(target, port, n)
        try:
            row: dict[str, Any] = {"target": target, "clients": n}
            # Capped so that a subscriber's backlog fits Redis's pubsub output buffer limit
            # (32 MB by default): past it Redis drops the subscriber, counting clients too.
            events = max(1000, min(deliveries // n, 200_000))
            row.update(await max_rate(redis_server.port, clients, n, events))
            if row["loss"] == 0:  # a target still draining a backlog would skew latency
                fixed = await fixed_rate(client, clients, n, 1000, seconds)
                row.update({f"fixed_{k}": v for k, v in fixed.items()})
            else:
                row.update(fixed_loss=None, fixed_p50=None, fixed_p95=None, fixed_p99=None)
            return row
        finally:
            await clients.close()
            await client.aclose()
            if process is not None:
                process.kill()
                await process.wait()


async def run(client_counts: list[int], deliveries: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for n in client_counts:
        for target in ("redis", "naive", "bridge"):
            # The naive bridge manages ~50,000 deliveries/s here: give it less to chew on.
            budget = deliveries if target != "naive" else min(deliveries, 500_000)
            row = await scenario(target, n, budget, seconds)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| clients | target | max rate: deliveries/s | loss "
        "| 1,000 ev/s: p50 / p95 / p99 ms | late or lost |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["clients"], r["target"])):
        lat = " / ".join(
            f"{r[k]:.2f}" if r[k] is not None else "-"
            for k in ("fixed_p50", "fixed_p95", "fixed_p99")
        )
        out.append(
            f"| {r['clients']:,} | {r['target']} | {r['deliveries_s']:,.0f} | {r['loss']:,} "
            f"| {lat} | {'-' if r['fixed_loss'] is None else format(r['fixed_loss'], ',')} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument(
        "--deliveries", type=int, default=4_000_000, help="max rate: messages x clients"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="fixed-rate duration")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    rows = asyncio.run(run(args.clients, args.deliveries, args.seconds))
    print(table(rows))


if __name__ == "__main__":
    main()
