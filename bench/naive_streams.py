"""The naive stream baseline: one ``bullmq.QueueEvents`` per queue, rebroadcasting each event.

    python -m bench.naive_streams --port P --redis-url URL --prefix PREFIX --queues N

What one would write with BullMQ's own listener: a QueueEvents (one connection, one
blocking XREAD) per queue, each entry turned into a frame and ``websockets.broadcast``
to every client (which frames it again for each). Same frames as the bridge's
``single-job-refresh`` (without the coarse hints the bridge adds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bullmq import QueueEvents
from websockets.asyncio.server import broadcast, serve

from bench.naive_bridge import CLIENTS, handler  # the same clients, greeted the same way


class Rebroadcast(QueueEvents):  # type: ignore[misc]
    """Every entry of the queue's stream, as a frame to every client."""

    def _dispatch_entry(self, entry_id: str, args: dict[str, Any]) -> None:
        data = {"jobId": args.get("jobId", ""), "queueName": self.name,
                "event": args.get("event"), "streamId": entry_id}  # fmt: skip
        broadcast(CLIENTS, json.dumps({"type": "single-job-refresh", "data": data}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queues", type=int, required=True)
    args = parser.parse_args()
    options = {"connection": args.redis_url, "prefix": args.prefix, "skipVersionCheck": True}
    listeners = [Rebroadcast(f"q{n:02d}", options) for n in range(args.queues)]
    async with serve(handler, "127.0.0.1", args.port, compression=None):
        print("ready", flush=True)
        await asyncio.Future()
    for listener in listeners:  # pragma: no cover - the benchmark kills this process
        await listener.close()


if __name__ == "__main__":
    asyncio.run(main())
