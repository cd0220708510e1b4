"""Test helpers: awaited conditions with deadlines, HTTP, a publisher, and bridges in
process or as child processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from bridge.config import Settings
from bridge.core.protocol import EventType, channel_name
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: How long a bridge may take to subscribe to Redis in a test.
SUBSCRIBE_TIMEOUT = 10.0


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


GREETING = {"type": "job-refresh", "data": {"id": "connected"}}


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """Receive one frame and parse it as JSON."""
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(frame)


async def recv_event(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """Receive one event; check its ``seq`` (an extension) and return it without."""
    message = await recv_json(ws, timeout)
    seq = message.pop("seq")
    assert type(seq) is int and seq > 0, message
    return message


def named(message: dict[str, Any]) -> Any:
    """What an event names: its job id, queue name or scheduler key."""
    data = message["data"]
    return data.get("jobId", data.get("queueName", data.get("schedulerKey")))


async def messages_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Every message up to and including the event that names ``last``."""
    received = []
    while True:
        message = await recv_json(ws)
        received.append(message)
        if named(message) == last:
            return received


async def expect_greeting(ws: ClientConnection) -> dict[str, Any]:
    """Receive the greeting and then the session message; return the session's data."""
    assert await recv_json(ws) == GREETING
    session = await recv_json(ws)
    assert session["type"] == "session", session
    assert isinstance(session["data"]["epoch"], str) and session["data"]["seq"] >= 0
    data: dict[str, Any] = session["data"]
    return data


async def raw_request(port: int, path: str, *headers: str, host: str = "127.0.0.1") -> bytes:
    """Send a WebSocket upgrade by hand and return everything the bridge answers (until it
    hangs up, or greets an accepted client)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(4096):
                answer += chunk
                if b'"connected"' in answer:
                    break
    finally:
        writer.close()
    return answer


async def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """GET ``url`` (in a thread) and return (status, JSON body)."""

    def get() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    return await asyncio.to_thread(get)


async def health_status(port: int) -> int:
    status, _ = await http_get(f"http://127.0.0.1:{port}/healthz")
    return status


class BridgeProcess:
    """``python -m bridge ...`` as a child process, its stderr collected line by line."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.args = args
        self.preexec = preexec  # run in the child before it starts (e.g. a resource limit)
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stdout_lines: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> BridgeProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
            preexec_fn=self.preexec,
        )
        assert self.process.stderr is not None and self.process.stdout is not None
        self._readers = [
            asyncio.create_task(self._collect(self.process.stderr, self.lines)),
            asyncio.create_task(self._collect(self.process.stdout, self.stdout_lines)),
        ]
        return self

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a stderr line matches ``pattern``; return the match."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            for line in self.lines:
                if m := re.search(pattern, line):
                    found.append(m)
                    return True
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"bridge exited early:\n{self.output}")
            return False

        await wait_for(seen, timeout, what=f"a log line matching {pattern!r}:\n{self.output}")
        return found[0]

    async def listening_port(self) -> int:
        return int((await self.wait_line(r"listening on port (\d+)")).group(1))

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def close(self) -> None:
        """Kill the process if it still runs (test clean-up; safe to call twice)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


def run(
    *args: str, timeout: float = 20, env: dict[str, str] | None = None, module: str = "bridge"
) -> subprocess.CompletedProcess[str]:
    """Run ``bbb-bridge`` (or ``module``) with ``args`` and extra variables to completion."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


async def publish_count(client: Any) -> int:
    """PUBLISH commands a Redis has run so far, from any client (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def open_files_limit(pid: int) -> int:
    """A process's soft open-files limit (Linux)."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return 1 << 20 if soft == "unlimited" else int(soft)
    raise AssertionError("no open-files limit")


def rss_bytes(pid: int) -> int:
    """A process's resident memory (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def start_bridge(redis_url: str, prefix: str, **overrides: object) -> Bridge:
    """A bridge in this process on a free port (``overrides``: Settings fields), started."""
    options: dict[str, object] = {"host": "127.0.0.1", "port": 0, **overrides}
    settings = Settings(redis_url=redis_url, prefix=prefix, **options)  # type: ignore[arg-type]
    bridge = Bridge(settings)
    await bridge.start()
    return bridge


class Publisher:
    """PUBLISH events the way Better Bull Board's ingest does."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    async def __call__(self, event_type: EventType | str, payload: bytes | str) -> int:
        suffix = event_type.value if isinstance(event_type, EventType) else event_type
        return int(await self.client.publish(f"{self.prefix}{suffix}", payload))

    def channel(self, event_type: EventType) -> str:
        return channel_name(self.prefix, event_type)


async def run_bridge(processes: list[BridgeProcess], *args: str) -> BridgeProcess:
    """``python -m bridge *args`` as a child process, cleaned up by ``processes``."""
    process = await BridgeProcess(*args).start()
    processes.append(process)
    return process


async def serving_bridge(
    processes: list[BridgeProcess], redis_server: RedisServer, prefix: str
) -> tuple[BridgeProcess, int]:
    """`bbb-bridge` on a free port, subscribed to ``redis_server``; returns it and its port."""
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0",
        "--redis-url", redis_server.url, "--prefix", prefix,
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line("Subscribed to Redis channels")
    return bridge, port
