"""Redis Cluster: a real three-master cluster, the bridge moves on when its node dies (issue 7).

Classic pub/sub is cluster-wide (a PUBLISH on any node reaches subscribers on every
node), so the bridge subscribes through one node and, when that node dies, through
the next one listed: clients get a resync and events keep flowing.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

from bridge.tools.embedded import RedisServer
from tests.helpers import BridgeProcess, expect_greeting, recv_json, run_bridge, wait_for

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher, Redis 6) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 55535)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def command(client: redis.Redis, *args: object) -> Any:
    """A raw Redis command (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture
def cluster() -> Iterator[list[RedisServer]]:
    """Three masters sharing the 16,384 slots, each node from the same redis-server binary."""
    with tempfile.TemporaryDirectory() as root:
        nodes: list[RedisServer] = []
        try:
            for i in range(3):
                directory = os.path.join(root, f"node{i}")
                os.mkdir(directory)
                options = (
                    "--cluster-enabled", "yes", "--dir", directory,
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                )  # fmt: skip
                nodes.append(RedisServer(port=cluster_port(), args=options).start())
            clients = [redis.Redis(port=node.port) for node in nodes]
            share = SLOTS // 3
            for i, client in enumerate(clients):
                last = SLOTS - 1 if i == 2 else (i + 1) * share - 1
                command(client, "CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
            for node in nodes[1:]:
                command(clients[0], "CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + 20
            while not all(
                b"cluster_state:ok" in command(c, "CLUSTER", "INFO")
                and b"cluster_known_nodes:3" in command(c, "CLUSTER", "INFO")
                for c in clients
            ):
                assert time.monotonic() < deadline, "the cluster did not form"
                time.sleep(0.1)
            for client in clients:
                client.close()
            yield nodes
        finally:
            for node in nodes:
                node.stop()


def publish(node: RedisServer, channel: str, payload: str) -> None:
    client = redis.Redis(port=node.port)
    try:
        client.publish(channel, payload)
    finally:
        client.close()


@pytest.mark.timeout(90)
async def test_the_bridge_follows_the_cluster_when_its_node_dies(
    processes: list[BridgeProcess], cluster: list[RedisServer], prefix: str
) -> None:
    """Events published on any node arrive; killing the bridge's node moves it to the next, with a
    resync."""
    first, second, third = cluster
    bridge = await run_bridge(
        processes, "--host", "127.0.0.1", "--port", "0", "--prefix", prefix,
        "--redis-url", first.url, "--redis-url", second.url, "--redis-url", third.url,
    )  # fmt: skip
    port = await bridge.listening_port()
    await bridge.wait_line(rf"Subscribed to Redis channels .* at {first.url}")
    channel = f"{prefix}job-refresh"
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await expect_greeting(ws)
        # Published on another node, delivered through the bridge's node.
        await asyncio.to_thread(publish, third, channel, "via-the-cluster-bus")
        assert (await recv_json(ws))["data"] == {"jobId": "via-the-cluster-bus"}

        first.kill()  # the node the bridge is on
        await bridge.wait_line(rf"Subscribed to Redis channels .* at {second.url}", timeout=15)
        assert (await recv_json(ws))["type"] == "redis-down"  # told at once, then back:
        resync = await recv_json(ws)
        assert (resync["type"], resync["data"]["reason"]) == ("resync", "redis-reconnected")

        async def delivered() -> bool:  # until the cluster bus carries it to the new node
            await asyncio.to_thread(publish, third, channel, "after-failover")
            try:
                message = await recv_json(ws, timeout=0.5)
            except TimeoutError:
                return False
            return bool(message["data"] == {"jobId": "after-failover"})

        await wait_for(delivered, 10, what="events flowing again")
    assert bridge.process is not None and bridge.process.returncode is None
