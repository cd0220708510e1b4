"""A WebSocket server that sends a bridge-like stream at a fixed rate (for benchmarks).

    python -m bench.feeder --port 0 --rate 20000 --seconds 10

Prints ``port N`` once listening, and ``sent N`` when the stream is over. It is a
separate process so that its CPU is not counted against the client under test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bridge.core.protocol import GREETING, EventType, encode_event

TICK = 0.005


def frames() -> itertools.cycle[bytes]:
    """A realistic mix: mostly single-job-refresh ids, with list refreshes and logs."""
    mix: list[bytes] = []
    for i in range(1000):
        mix.append(encode_event(EventType.SINGLE_JOB_REFRESH, f"job-{i}"))
        if i % 10 == 0:
            mix.append(encode_event(EventType.JOB_REFRESH, "1"))
        if i % 7 == 0:
            mix.append(encode_event(EventType.JOB_LOG_REFRESH, f"job-{i}"))
        if i % 50 == 0:
            mix.append(encode_event(EventType.QUEUE_REFRESH, f"queue-{i % 4}"))
    return itertools.cycle(mix)


async def stream(
    ws: ServerConnection, rate: float, seconds: float, done: asyncio.Future[int]
) -> None:
    broadcast([ws], GREETING, text=True)
    source = frames()
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate)) - sent
        for frame in itertools.islice(source, max(due, 0)):
            broadcast([ws], frame, text=True)
        sent += max(due, 0)
        await asyncio.sleep(TICK)
    if not done.done():
        done.set_result(sent)
    await ws.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    async with serve(
        lambda ws: stream(ws, args.rate, args.seconds, done),
        "127.0.0.1",
        args.port,
        compression=None,
        write_limit=2**24,
    ) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        print(f"sent {await done}", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
