"""A real redis-server with TLS (a private CA made here, and client certificates): the bridge
honours the rediss:// options, and says what a TLS mix-up probably is."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect

from bridge.checks import check_redis_url
from bridge.config import ConfigError
from bridge.core.protocol import EventType
from bridge.tools.embedded import EmbeddedRedisError, RedisServer, free_port
from tests.helpers import Publisher, expect_greeting, recv_event, start_bridge, wait_for

#: Debian's redis-tools ships the server binary under this name (scripts/ensure-redis-tls).
DEBIAN_BINARY = "/usr/bin/redis-check-rdb"


def tls_binary(directory: Path) -> str | None:
    """A redis-server built with TLS: Debian's (linked under a name that runs the server)."""
    for candidate in (DEBIAN_BINARY, shutil.which("redis-server")):
        if candidate and os.path.exists(candidate):
            link = directory / "redis-server"  # the binary picks its mode by its name
            link.symlink_to(candidate)
            return str(link)
    return None


@dataclass
class TlsRedis:
    server: RedisServer
    tls_port: int
    files: Path

    def url(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"rediss://127.0.0.1:{self.tls_port}" + (f"?{query}" if query else "")

    def trusted(self) -> dict[str, str]:
        """The options of a client the server accepts: the private CA and a client cert."""
        return {
            "ssl_ca_certs": str(self.files / "ca.pem"),
            "ssl_certfile": str(self.files / "client.pem"),
            "ssl_keyfile": str(self.files / "client.key"),
        }


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """redis-server with a plain port (for the test's publisher) and a TLS port that demands
    a client certificate signed by a CA made for this test."""
    binary = tls_binary(tmp_path)
    if binary is None:
        if os.environ.get("BBB_REQUIRE_TLS_REDIS") == "1":
            raise RuntimeError("BBB_REQUIRE_TLS_REDIS=1 but no TLS-capable redis-server")
        pytest.skip("no TLS-capable redis-server (make test installs Debian's redis-tools)")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    client_cert = ca.issue_cert("bbb-bridge")
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    tls_port = free_port()
    args = (
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tmp_path / "server.pem"),
        "--tls-key-file", str(tmp_path / "server.key"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    try:
        server = RedisServer(binary, args=args).start()
    except EmbeddedRedisError as exc:
        pytest.fail(f"{binary} would not start with TLS: {exc}")
    try:
        yield TlsRedis(server, tls_port, tmp_path)
    finally:
        server.stop()


async def test_mutual_tls_with_a_private_ca_subscribes_and_delivers(
    tls_redis: TlsRedis, prefix: str
) -> None:
    """rediss:// with ssl_ca_certs, ssl_certfile and ssl_keyfile: subscribed over TLS, and a
    PUBLISH reaches a WebSocket client."""
    import redis.asyncio as aioredis

    bridge = await start_bridge(tls_redis.url(**tls_redis.trusted()), prefix)
    publisher = aioredis.Redis.from_url(tls_redis.server.url)
    try:
        await bridge.source.wait_subscribed(10)
        async with connect(f"ws://127.0.0.1:{bridge.port}") as ws:
            await expect_greeting(ws)
            await Publisher(publisher, prefix)(EventType.JOB_REFRESH, "over-tls")
            assert await recv_event(ws) == {"type": "job-refresh", "data": {"jobId": "over-tls"}}
    finally:
        await publisher.aclose()
        await bridge.stop()


@pytest.mark.parametrize(
    "options,hint",
    [
        ({}, "certificate is not trusted"),  # the private CA not named
        ({"ssl_ca_certs": "CA"}, "is this Redis serving TLS"),  # no client certificate
    ],
)
async def test_a_tls_mismatch_says_what_it_probably_is(
    tls_redis: TlsRedis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, str],
    hint: str,
) -> None:
    """Without the CA, or without a client certificate, the bridge keeps retrying and its
    log says why in words."""
    caplog.set_level(logging.WARNING, logger="bridge.source")
    options = {k: str(tls_redis.files / "ca.pem") if v == "CA" else v for k, v in options.items()}
    bridge = await start_bridge(tls_redis.url(**options), prefix)
    try:
        await wait_for(lambda: hint in caplog.text, 15, what=f"{hint!r} in the log")
    finally:
        await bridge.stop()


async def test_tls_against_a_plain_redis_hints_at_tls(
    tls_redis: TlsRedis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """REDIS_USE_TLS=true (rediss://) pointed at a plain port: the log says TLS is the likely
    cause; plain redis:// at the TLS port: likewise, the other way round."""
    caplog.set_level(logging.WARNING, logger="bridge.source")
    plain = f"rediss://127.0.0.1:{tls_redis.server.port}?ssl_cert_reqs=none"
    # A plain port never answers a TLS hello: a short timeout ends the wait.
    bridge = await start_bridge(plain, prefix, redis_timeout=1.0)
    try:
        await wait_for(lambda: "is this Redis serving TLS" in caplog.text, 15, what="the TLS hint")
    finally:
        await bridge.stop()
    bridge = await start_bridge(f"redis://127.0.0.1:{tls_redis.tls_port}", prefix)
    try:
        await wait_for(lambda: "does this Redis want TLS" in caplog.text, 15, what="the hint")
    finally:
        await bridge.stop()


def test_unreadable_tls_files_stop_the_start(tmp_path: Path) -> None:
    """A CA or certificate file that cannot be read is a one-line error at start."""
    with pytest.raises(ConfigError, match=r"cannot load ssl_ca_certs=/no/such\.pem"):
        check_redis_url("rediss://h:6380?ssl_ca_certs=/no/such.pem")
    with pytest.raises(ConfigError, match="ssl_cert_reqs"):
        check_redis_url("rediss://h:6380?ssl_cert_reqs=sometimes")
