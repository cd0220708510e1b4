"""Delivery modes compared: plain, ?batch=, permessage-deflate, both (issue 7).

    python -m bench.modes [--clients 100] [--rate 2000] [--seconds 5]

One bridge (``--compression``) on a private redis-server; for each mode, N clients
connect with it and a publisher sends a realistic mix (job ids, queue names) at a
fixed rate. Reported from the bridge's own ``/metrics``: bytes on the wire per event
per client and the bridge's CPU per 1,000 events; from a probe client: latency
(publish to receipt). Ratios inside one run are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from bench.machine import ROOT, describe
from bridge.core.protocol import DEFAULT_PREFIX, EventType, channel_name
from bridge.tools.embedded import RedisServer, free_port

MODES = [
    ("plain", "", None),
    ("batch=100ms", "?batch=100", None),
    ("deflate", "", "deflate"),
    ("batch=100ms+deflate", "?batch=100", "deflate"),
]


def scrape(port: int) -> tuple[float, float]:
    """(bytes out, CPU seconds) from the bridge's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return values["bbb_bridge_bytes_out_total"], values["process_cpu_seconds_total"]


async def drain(ws: ClientConnection, latencies: list[float] | None) -> None:
    async for frame in ws:
        if latencies is None:
            continue
        now = time.monotonic_ns()
        message = json.loads(frame)
        for item in message if isinstance(message, list) else [message]:
            ident = item.get("data", {}).get("jobId", "")
            if ident.startswith("t"):
                latencies.append((now - int(ident[1:21])) / 1e6)


async def publish(url: str, rate: float, seconds: float) -> int:
    client = aioredis.Redis.from_url(url)
    loop = asyncio.get_running_loop()
    per_tick, sent = max(int(rate / 100), 1), 0
    started = next_at = loop.time()
    try:
        while loop.time() - started < seconds:
            pipe = client.pipeline(transaction=False)
            for i in range(per_tick):
                stamp = f"t{time.monotonic_ns():020d}-{sent + i}"
                if (sent + i) % 10 == 0:  # a realistic mix: mostly jobs, some queues
                    pipe.publish(channel_name(DEFAULT_PREFIX, EventType.QUEUE_REFRESH), "emails")
                pipe.publish(channel_name(DEFAULT_PREFIX, EventType.SINGLE_JOB_REFRESH), stamp)
            await pipe.execute()
            sent += per_tick
            next_at += 0.01
            await asyncio.sleep(max(next_at - loop.time(), 0))
    finally:
        await client.aclose()
    return sent + sent // 10


async def run(clients: int, rate: float, seconds: float) -> list[dict[str, object]]:
    results = []
    with RedisServer() as redis_server:
        port = free_port()
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--redis-url", redis_server.url, "--compression", "--log-level", "warning", cwd=ROOT,
        )  # fmt: skip
        try:
            await asyncio.sleep(1.5)
            for name, query, compression in MODES:
                url = f"ws://127.0.0.1:{port}/{query}"
                sockets = [await connect(url, compression=compression) for _ in range(clients)]
                latencies: list[float] = []
                readers = [
                    asyncio.create_task(drain(ws, latencies if i == 0 else None))
                    for i, ws in enumerate(sockets)
                ]
                await asyncio.sleep(0.5)
                bytes_before, cpu_before = scrape(port)
                events = await publish(redis_server.url, rate, seconds)
                await asyncio.sleep(0.5)
                bytes_after, cpu_after = scrape(port)
                for ws in sockets:
                    await ws.close()
                await asyncio.gather(*readers, return_exceptions=True)
                latencies.sort()
                results.append(
                    {
                        "mode": name,
                        "bytes_per_event": (bytes_after - bytes_before) / events / clients,
                        "cpu_ms_per_1000_events": (cpu_after - cpu_before) / events * 1e6,
                        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
                        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
        finally:
            bridge.terminate()
            await bridge.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2000, help="events per second")
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    print(f"machine: {describe()}")
    results = asyncio.run(run(args.clients, args.rate, args.seconds))
    print(f"\n{args.clients} clients, {args.rate:,.0f} events/s\n")
    print("| mode | bytes/event/client | bridge CPU ms per 1,000 events | latency p50 / p99 ms |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['bytes_per_event']:.1f} | {r['cpu_ms_per_1000_events']:.1f} "
            f"| {r['p50_ms']:.1f} / {r['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
