"""The cost of filtered clients: N clients that each filter on a queue of their own.

    python -m bench.groups [--clients 2000] [--events 20000]

Each client in its own ``?queue=`` is a group of one in the hub. The traffic is job
events (which name no queue, so every client still gets them): the bridge's CPU for the
same traffic, with every client unfiltered and then with every client in its own group,
shows what a group costs per batch. Ratios inside one run are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from bench.fanout import blast, start_clients, start_target, until_quiet
from bench.machine import describe
from bridge.tools.embedded import RedisServer

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def run(n: int, events: int, queue_each: bool) -> dict[str, Any]:
    with RedisServer() as redis_server:
        process, port = await start_target("bridge", redis_server.url)
        assert process is not None
        clients = await start_clients("bridge", port, n, queue_each=queue_each)
        try:
            await clients.command("reset")
            before = cpu_seconds(process.pid)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await blast(redis_server.port, events)
            report, done = await until_quiet(clients, events * n, timeout=120)
            cpu = cpu_seconds(process.pid) - before
            return {
                "clients": n,
                "filtered": queue_each,
                "loss": events * n - report["total"],
                "deliveries_s": report["total"] / max(done - start, 1e-6),
                "bridge_cpu_s": cpu,
            }
        finally:
            await clients.close()
            process.kill()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(f"machine: {describe()}")
    rows = [asyncio.run(run(args.clients, args.events, each)) for each in (False, True)]
    print("| clients | each in its own ?queue= | deliveries/s | loss | bridge CPU s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(json.dumps(row), file=sys.stderr)
        print(
            f"| {row['clients']:,} | {'yes' if row['filtered'] else 'no'} "
            f"| {row['deliveries_s']:,.0f} | {row['loss']:,} | {row['bridge_cpu_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
