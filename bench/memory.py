"""Bridge memory per idle WebSocket connection (RSS growth / connections).

    python -m bench.memory [--connections 15000]

Starts a private Redis and the bridge, opens N idle connections from a client
process (the byte counters of bench/clients.py), and reads the bridge's RSS from
/proc before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys

from bench.fanout import start_clients, start_target
from bench.machine import describe
from bridge.tools.embedded import RedisServer


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(target: str, n: int) -> tuple[int, int]:
    with RedisServer() as redis_server:
        process, port = await start_target(target, redis_server.url)
        assert process is not None
        try:
            await asyncio.sleep(1.0)
            before = rss_kib(process.pid)
            clients = await start_clients(target, port, n)
            try:
                await asyncio.sleep(2.0)
                after = rss_kib(process.pid)
            finally:
                await clients.close()
            return before, after
        finally:
            process.kill()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=15_000)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    print(f"machine: {describe()}")
    for target in ("naive", "bridge"):
        before, after = asyncio.run(measure(target, args.connections))
        per = (after - before) / (args.connections + 1)
        print(
            f"{target}: RSS {before:,} KiB -> {after:,} KiB with {args.connections:,} "
            f"idle connections: {per:.1f} KiB each",
            flush=True,
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
