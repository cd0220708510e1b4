"""Cheap clients for the fan-out benchmark: they count bytes, not frames.

    python -m bench.clients ws  --url ws://127.0.0.1:P   --clients N
    python -m bench.clients redis --port P --channel C   --clients N

Every event of a run has a payload of the same size, so its frame (or Redis reply)
has a known size and ``bytes / size`` is the count: no parsing per message, so the
clients are not the bottleneck. One extra "probe" connection parses everything and
measures latency from the publish timestamp carried in each payload
(``time.monotonic_ns()``, comparable across processes on Linux).

Prints ``ready`` once all are connected. Commands on stdin: ``report <message_size>``
prints one JSON line (messages per client: min/max/total; latency percentiles), and
``reset`` zeroes the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bridge.pubsub import command

HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
GREETING_FRAME = 2 + len(b'{"type":"job-refresh","data":{"id":"connected"}}')
STAMP = re.compile(rb"\d{20}")  # a zero-padded monotonic_ns: a split one is just skipped


class Counter(asyncio.Protocol):
    """Counts the bytes that follow the opening exchange (handshake + greeting, or SUBSCRIBE)."""

    def __init__(
        self, hello: bytes, opening: Callable[[bytes], int | None], ready: asyncio.Future[None]
    ) -> None:
        self.hello, self.opening, self.ready = hello, opening, ready
        self.head = b""
        self.bytes = 0
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.hello)

    def data_received(self, data: bytes) -> None:
        if self.open:
            self.bytes += len(data)
            return
        self.head += data
        length = self.opening(self.head)
        if length is not None and len(self.head) >= length:
            self.open = True
            self.bytes = len(self.head) - length
            if not self.ready.done():
                self.ready.set_result(None)


class Probe(Counter):
    """Also reads the publish timestamp in every payload it sees: latency."""

    latencies: list[int]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        super().data_received(data)
        if self.open:
            self.latencies.extend(now - int(stamp) for stamp in STAMP.findall(data))


def ws_opening(head: bytes) -> int | None:
    end = head.find(b"\r\n\r\n")
    return None if end < 0 else end + 4 + GREETING_FRAME


def percentile(ordered: list[int], q: float) -> float | None:
    """The q-th quantile of sorted nanoseconds, in milliseconds."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["ws", "redis"])
    parser.add_argument("--url", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--channel", default="")
    parser.add_argument("--clients", type=int, required=True)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    if args.kind == "ws":
        parts = urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        hello = HANDSHAKE.format(host=f"{host}:{port}").encode()
        opening: Callable[[bytes], int | None] = ws_opening
    else:
        host, port = "127.0.0.1", args.port
        hello = command("SUBSCRIBE", args.channel)
        reply = len(command("subscribe", args.channel)) + len(b":1\r\n")  # same length
        opening = lambda head: reply  # noqa: E731
    counters: list[Counter] = []
    waits = []
    for i in range(args.clients + 1):
        ready: asyncio.Future[None] = loop.create_future()
        cls = Probe if i == 0 else Counter
        _, proto = await loop.create_connection(
            lambda cls=cls, ready=ready: cls(hello, opening, ready),
            host,
            port,
        )
        if isinstance(proto, Probe):
            proto.latencies = []
        counters.append(proto)
        waits.append(ready)
    await asyncio.gather(*waits)
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "report":
            size = int(line[1])
            counts = [c.bytes // size for c in counters[1:]]
            probe = counters[0]
            assert isinstance(probe, Probe)
            lat = sorted(probe.latencies)
            print(
                json.dumps(
                    {
                        "min": min(counts),
                        "max": max(counts),
                        "total": sum(counts),
                        "p50": percentile(lat, 0.5),
                        "p95": percentile(lat, 0.95),
                        "p99": percentile(lat, 0.99),
                    }
                ),
                flush=True,
            )
        elif line[0] == "reset":
            for c in counters:
                c.bytes = 0
            probe = counters[0]
            assert isinstance(probe, Probe)
            probe.latencies.clear()
            print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
