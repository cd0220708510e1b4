"""No way in without a key: tokens, origins, connection and frame-rate limits (issue 6)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.client import ConnState
from bridge.serving.auth import issue_token, verify_token
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import (
    GREETING,
    SUBSCRIBE_TIMEOUT,
    Publisher,
    expect_greeting,
    raw_request,
    recv_json,
    run,
    start_bridge,
    wait_for,
)

SECRET = "correct-horse-battery-staple-0123456789"


@pytest.fixture
async def locked(redis_server: RedisServer, prefix: str) -> AsyncIterator[Bridge]:
    """A bridge that requires a token and only lets https://bbb.example pages in."""
    bridge = await start_bridge(
        redis_server.url,
        prefix,
        auth_secret=SECRET,
        allowed_origins=frozenset({"https://bbb.example"}),
    )
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        yield bridge
    finally:
        await bridge.stop()


@pytest.mark.parametrize(
    "path,headers,why",
    [
        ("/", (), b"missing token"),
        ("/?token=not-a-jwt", (), b"invalid token"),
        ("/", ("Authorization: Bearer " + issue_token("x" * 32),), b"invalid token"),
        ("/?token=" + issue_token(SECRET, ttl=-5), (), b"token expired"),
    ],
    ids=["missing", "garbage", "other-secret", "expired"],
)
async def test_no_valid_token_is_401_before_any_frame(
    locked: Bridge, path: str, headers: tuple[str, ...], why: bytes
) -> None:
    """Missing, malformed, wrongly signed or expired: HTTP 401, and not one WebSocket frame."""
    answer = await raw_request(locked.port, path, *headers)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b"WWW-Authenticate: Bearer" in head
    assert why in body and b"connected" not in answer  # an HTTP body, never the greeting
    assert len(locked.hub) == 0


async def test_a_valid_token_gets_in_by_query_or_header(locked: Bridge, publish: Publisher) -> None:
    """?token= (what a browser can do) and Authorization: Bearer both work."""
    token = issue_token(SECRET, ttl=60, subject="test")
    url = f"ws://127.0.0.1:{locked.port}"
    async with (
        connect(f"{url}/?token={token}") as by_query,
        connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as by_header,
    ):
        await expect_greeting(by_query)
        await expect_greeting(by_header)
        await publish("job-refresh", "7")
        assert (await recv_json(by_query))["data"] == {"jobId": "7"}
        assert (await recv_json(by_header))["data"] == {"jobId": "7"}


async def test_healthz_answers_without_a_token_and_tells_nothing_secret(locked: Bridge) -> None:
    """/healthz needs no token, and its body holds only status, Redis state and client count."""
    answer = await raw_request(locked.port, "/healthz")
    assert answer.startswith(b"HTTP/1.1 200 ")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert set(body) == {"status", "redis", "clients"}
    assert SECRET.encode() not in answer and b"redis://" not in answer


@pytest.mark.parametrize(
    "origin,status",
    [("https://bbb.example", 101), ("HTTPS://BBB.example/", 101), ("https://evil.example", 403)],
)
async def test_browsers_from_other_origins_get_403(
    locked: Bridge, origin: str, status: int
) -> None:
    """Allowed origins (any case, trailing slash) upgrade; any other gets 403, no frame."""
    token = issue_token(SECRET)
    answer = await raw_request(locked.port, f"/?token={token}", f"Origin: {origin}")
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    if status == 403:
        assert b"not allowed" in answer and b"connected" not in answer


async def test_max_connections_turns_the_next_one_away_with_503(
    redis_server: RedisServer, prefix: str
) -> None:
    """Past --max-connections: 503 with Retry-After; once one leaves, room again."""
    bridge = await start_bridge(redis_server.url, prefix, max_connections=2)
    url = f"ws://127.0.0.1:{bridge.port}"
    try:
        async with connect(url) as first, connect(url) as second:
            await expect_greeting(first)
            await expect_greeting(second)
            with pytest.raises(InvalidStatus) as refused:
                await connect(url)
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers["Retry-After"] == "5"
        await wait_for(lambda: len(bridge.hub) == 0, what="both gone")
        async with connect(url) as third:  # room again
            assert await recv_json(third) == GREETING
    finally:
        await bridge.stop()


async def test_a_client_flooding_frames_is_closed_with_1008_and_others_carry_on(
    redis_server: RedisServer, prefix: str, publish: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst within the allowance is fine; a flood closes that client with 1008, others are
    served."""
    caplog.set_level(logging.WARNING, logger="bridge")
    bridge = await start_bridge(redis_server.url, prefix, max_client_rate=10)
    url = f"ws://127.0.0.1:{bridge.port}"
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        async with connect(url) as chatty, connect(url) as quiet:
            await expect_greeting(quiet)
            for i in range(5):  # within the burst: fine
                await chatty.send(f"hello {i}")
            await asyncio.sleep(0.2)
            assert chatty.close_code is None
            with contextlib.suppress(ConnectionClosed):  # sends fail once it is closed
                for i in range(200):
                    await chatty.send(f"spam {i}")
            await asyncio.wait_for(chatty.wait_closed(), 5)
            assert chatty.close_code == 1008
            await publish("job-refresh", "still-here")
            assert (await recv_json(quiet))["data"] == {"jobId": "still-here"}
        assert "closing (1008)" in caplog.text
    finally:
        await bridge.stop()


def test_token_command_prints_a_token_on_its_last_line() -> None:
    """`bbb-bridge token` prints a token the secret verifies, with the sub and lifetime asked."""
    result = run("token", "--ttl", "120", "--sub", "ops", env={"BBB_AUTH_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    claims = verify_token(SECRET, result.stdout.strip().splitlines()[-1])
    assert claims["sub"] == "ops" and claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize("command", [["token"], ["serve", "--port", "0"]])
def test_a_short_secret_is_one_line_and_exit_2(command: list[str]) -> None:
    """A secret under 32 bytes is refused in one line, exit 2, by token and serve alike."""
    result = run(*command, "--auth-secret", "short")
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr and "Traceback" not in result.stderr


async def test_tui_with_a_token_connects_and_without_one_says_why(locked: Bridge) -> None:
    """bbb-tui with a valid token connects; without one it stops retrying and shows the 401's
    reason."""
    url = f"ws://127.0.0.1:{locked.port}"
    good = BbbApp(TuiSettings(url=url, token=issue_token(SECRET)))
    async with good.run_test(size=(120, 40)):
        await wait_for(lambda: good.status.state is ConnState.CONNECTED, 10, what="connected")
    bad = BbbApp(TuiSettings(url=url))
    async with bad.run_test(size=(120, 40)):
        await wait_for(lambda: bad.status.state is ConnState.DISCONNECTED, 10, what="refused")
        assert bad.status.error == (
            "refused: HTTP 401 missing token (?token= or Authorization: Bearer)"
        )


async def test_tail_with_and_without_a_token(locked: Bridge) -> None:
    """`tail --token`/BBB_TOKEN gets in; without a token it exits 1 with the bridge's reason."""
    url = f"ws://127.0.0.1:{locked.port}"
    ok = await asyncio.to_thread(
        run, "tail", "--url", url, "--count", "1", env={"BBB_TOKEN": issue_token(SECRET)}
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == GREETING
    refused = await asyncio.to_thread(run, "tail", "--url", url, "--count", "1")
    assert refused.returncode == 1
    assert "HTTP 401 missing token" in refused.stderr and "Traceback" not in refused.stderr
