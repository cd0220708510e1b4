"""Abusive clients in a process of their own (so the test's own loop stays quiet):

    python -m tests.flooders --port P --clients N --kind subscribe|unsubscribe|ping

Each connects, then writes its kind of frame as fast as the bridge takes them, until
killed. Prints ``ready`` once all are connected, or ``failed: <why>`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json

from tests.hostile import ws_frame

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x01\x02\x03\x04"
#: Seconds for all to connect (the test waits for the verdict a little longer).
CONNECT_TIMEOUT = 15.0


@functools.cache
def frames(kind: str, n: int) -> bytes:
    """About 240 KB of one kind of frame (built once per kind: 150 clients of pings
    would otherwise spend seconds building them, and connect late)."""
    if kind == "ping":
        one = ws_frame(9, b"", mask=MASK)
    elif kind == "unsubscribe":
        one = ws_frame(1, b'{"action":"unsubscribe"}', mask=MASK)
    else:  # 256 queue names of 60 bytes (the most a filter may hold), in and out again
        names = [f"{n}-{i:03d}-" + "q" * 50 for i in range(256)]
        one = b"".join(
            ws_frame(1, json.dumps({"action": action, "queues": names}).encode(), mask=MASK)
            for action in ("subscribe", "unsubscribe")
        )
    return one * max(1, 240_000 // len(one))


async def flood(port: int, kind: str, n: int, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    answer = await reader.readuntil(b"\r\n\r\n")
    if not answer.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(answer.split(b"\r\n", 1)[0].decode("latin-1"))
    ready.set()
    data = frames(kind, n if kind == "subscribe" else 0)
    drain = asyncio.create_task(reader.read(-1))  # what the bridge answers: read, dropped
    try:
        while True:
            writer.write(data)
            await writer.drain()
    finally:
        drain.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--kind", default="subscribe")
    args = parser.parse_args()
    readies = [asyncio.Event() for _ in range(args.clients)]
    tasks = [
        asyncio.create_task(flood(args.port, args.kind, n, ready))
        for n, ready in enumerate(readies)
    ]
    deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT
    while not all(ready.is_set() for ready in readies):
        broken = [task for task in tasks if task.done()]
        if broken or asyncio.get_running_loop().time() > deadline:
            # say why, rather than leave the test waiting for a "ready" that never comes
            why = repr(broken[0].exception()) if broken else f"{CONNECT_TIMEOUT:g} s passed"
            connected = sum(ready.is_set() for ready in readies)
            print(f"failed: {connected} of {args.clients} connected; {why}", flush=True)
            raise SystemExit(1)
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
