"""The naive baseline the issue measures against: redis-py PubSub + websockets.broadcast.

    python -m bench.naive_bridge --port P --redis-url URL

One message at a time: ``get_message()`` per Redis message, ``broadcast()`` per event
(which frames the message again for every client). Same channels, same frames.
"""

from __future__ import annotations

import argparse
import asyncio

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

from bridge.core.protocol import (
    DEFAULT_PREFIX,
    GREETING,
    channel_table,
    decode_payload,
    encode_event,
)

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    await ws.send(GREETING.decode())
    CLIENTS.add(ws)
    try:
        await ws.wait_closed()
    finally:
        CLIENTS.discard(ws)


async def relay(url: str) -> None:
    table = channel_table(DEFAULT_PREFIX)
    client = aioredis.Redis.from_url(url)
    async with client.pubsub() as pubsub:
        await pubsub.psubscribe(DEFAULT_PREFIX + "*")
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                event_type = table.get(message["channel"])
                if event_type is not None:
                    frame = encode_event(event_type, decode_payload(message["data"]))
                    broadcast(CLIENTS, frame.decode())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    async with serve(handler, "127.0.0.1", args.port, compression=None):
        await relay(args.redis_url)


if __name__ == "__main__":
    asyncio.run(main())
