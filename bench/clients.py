"""Cheap clients for the fan-out benchmark (and the stuck-client test): they count, not parse.

    python -m bench.clients ws  --url ws://127.0.0.1:P   --clients N [--queue-each]
    python -m bench.clients redis --port P --channel C   --clients N

Every event of a run is a ``single-job-refresh``, and that word appears exactly once
per event, whether in a bridge's frame or in a Redis reply: counting its occurrences
in each read (``bytes.count``, in C) is the count, with no parsing per message, so
the clients are not the bottleneck. One extra "probe" connection also measures
latency from the publish timestamp carried in each payload (``time.monotonic_ns()``,
comparable across processes on Linux).

Prints ``ready`` once all are connected. Commands on stdin: ``report`` prints one
JSON line (messages per client: min/max/total; latency percentiles), and ``reset``
zeroes the counts.
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

from bridge.sources.resp import command

HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MARKER = b"single-job-refresh"  # once per event; not in the greeting or control messages
STAMP = re.compile(rb"\d{20}")  # a zero-padded monotonic_ns: a split one is just skipped


class Counter(asyncio.Protocol):
    """Counts the events that follow the opening exchange (the handshake, or SUBSCRIBE)."""

    def __init__(
        self, hello: bytes, opening: Callable[[bytes], int | None], ready: asyncio.Future[None]
    ) -> None:
        self.hello, self.opening, self.ready = hello, opening, ready
        self.head = b""
        self.count = 0
        self._tail = b""  # the end of the last read: a marker may straddle two reads
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.hello)

    def data_received(self, data: bytes) -> None:
        if self.open:
            self._count(data)
            return
        self.head += data
        length = self.opening(self.head)
        if length is not None and len(self.head) >= length:
            self.open = True
            self._count(self.head[length:])
            if not self.ready.done():
                self.ready.set_result(None)

    def _count(self, data: bytes) -> None:
        edge = len(MARKER) - 1
        self.count += data.count(MARKER) + (self._tail + data[:edge]).count(MARKER)
        self._tail = data[-edge:] if len(data) >= edge else (self._tail + data)[-edge:]


class Probe(Counter):
    """Also reads the publish timestamp in every payload it sees: latency."""

    latencies: list[int]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        super().data_received(data)
        if self.open:
            self.latencies.extend(now - int(stamp) for stamp in STAMP.findall(data))


def ws_opening(head: bytes) -> int | None:
    """Open once the 101 and the greeting are in (events come after the greeting)."""
    end = head.find(b"\r\n\r\n")
    return None if end < 0 or b'"connected"' not in head else end + 4


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
    parser.add_argument(
        "--queue-each", action="store_true", help="ws: each client filters on a queue of its own"
    )
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
        mine = hello.replace(b"GET / ", b"GET /?queue=q%d " % i) if args.queue_each else hello
        _, proto = await loop.create_connection(
            lambda cls=cls, ready=ready, mine=mine: cls(mine, opening, ready),
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
            counts = [c.count for c in counters[1:]]
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
                c.count = 0
            probe = counters[0]
            assert isinstance(probe, Probe)
            probe.latencies.clear()
            print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
