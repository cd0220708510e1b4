"""The live page at GET /, in a real headless Chromium driven by Playwright (issue 7)."""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bridge.core.protocol import EventType
from bridge.serving.auth import issue_token
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer, free_port
from tests.helpers import SUBSCRIBE_TIMEOUT, Publisher, start_bridge

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECRET = "page-test-secret-0123456789-abcdefghij"

if CHROMIUM is None and os.environ.get("BBB_REQUIRE_BROWSER") == "1":
    raise RuntimeError("BBB_REQUIRE_BROWSER=1 but no chromium on PATH")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (make test installs Debian's)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page()
    page.set_default_timeout(10_000)
    await page.goto(url)
    return page


async def test_the_page_is_plain_http_with_a_strict_policy(bridge: Bridge) -> None:
    """GET / is an HTML page with a strict Content-Security-Policy."""

    def get() -> tuple[int, dict[str, str], bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{bridge.port}/", timeout=5) as response:
            return response.status, dict(response.headers), response.read()

    status, headers, body = await asyncio.to_thread(get)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"<title>bbb-bridge: live events</title>" in body


async def test_live_messages_connect_disconnect_filter_clear(
    bridge: Bridge, publish: Publisher, browser: Browser
) -> None:
    """In Chromium: live messages (hostile ones as text), filter, clear, disconnect and resume."""
    page = await open_page(browser, f"http://127.0.0.1:{bridge.port}/")
    await expect(page.locator("#state")).to_have_text("connected")
    rows = page.locator("#log .row")
    await expect(rows).to_have_count(2)  # the greeting and the session
    await publish(EventType.JOB_REFRESH, "job-1")
    await publish(EventType.QUEUE_REFRESH, "emails")
    hostile = "<img src=x onerror=document.title=1>"
    await publish(EventType.SINGLE_JOB_REFRESH, hostile)
    await expect(rows).to_have_count(5)
    await expect(rows.nth(2)).to_contain_text('job-refresh{"jobId":"job-1"}  #1')
    await expect(rows.nth(4)).to_contain_text(hostile)  # shown as text, never run
    assert await page.title() == "bbb-bridge: live events"
    assert await page.locator("#log img").count() == 0
    await expect(page.locator("#counts")).to_have_text("5 messages")

    await page.fill("#filter", "emails")
    await expect(page.locator("#log .row:not(.hidden)")).to_have_count(1)
    await page.fill("#filter", "")
    await expect(page.locator("#log .row:not(.hidden)")).to_have_count(5)

    await page.click("#disconnect")
    await expect(page.locator("#state")).to_have_text("disconnected")
    await page.click("#clear")
    await expect(rows).to_have_count(0)
    await page.click("#connect")
    await expect(page.locator("#state")).to_have_text("connected")
    # It resumed where it left off: greeting, session, nothing missed, nothing repeated.
    await expect(rows).to_have_count(2)
    await publish(EventType.JOB_REFRESH, "job-2")
    await expect(rows.nth(2)).to_contain_text('{"jobId":"job-2"}  #4')


async def test_the_page_reconnects_after_the_bridge_restarts(
    redis_server: RedisServer, prefix: str, browser: Browser
) -> None:
    """The page reconnects by itself after a bridge restart and shows the resync it gets."""
    bridge = await start_bridge(redis_server.url, prefix)
    port = bridge.port
    page = await open_page(browser, f"http://127.0.0.1:{port}/")
    await expect(page.locator("#state")).to_have_text("connected")
    await bridge.stop()
    await expect(page.locator("#state")).to_contain_text("reconnecting")
    bridge = await start_bridge(redis_server.url, prefix, port=port)
    try:
        await expect(page.locator("#state")).to_have_text("connected", timeout=40_000)
        await expect(page.locator("#log .row.control").last).to_contain_text("epoch-changed")
    finally:
        await bridge.stop()


async def test_the_page_shows_a_redis_outage_behind_the_bridge(
    own_redis: RedisServer, prefix: str, browser: Browser
) -> None:
    """Redis killed behind the bridge: the page shows 'Redis down Ns' until the resync."""
    bridge = await start_bridge(own_redis.url, prefix)
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        page = await open_page(browser, f"http://127.0.0.1:{bridge.port}/")
        await expect(page.locator("#state")).to_have_text("connected")
        await expect(page.locator("#redis")).to_be_hidden()
        own_redis.kill()
        await expect(page.locator("#redis")).to_contain_text("Redis down")
        own_redis.start()
        await expect(page.locator("#redis")).to_be_hidden(timeout=15_000)
        await expect(page.locator("#log .row.control").last).to_contain_text("redis-reconnected")
    finally:
        await bridge.stop()


async def test_the_page_shows_controls_and_bidi_as_escapes(
    bridge: Bridge, publish: Publisher, browser: Browser
) -> None:
    """A job id with a right-to-left override or a line separator is shown escaped."""
    page = await open_page(browser, f"http://127.0.0.1:{bridge.port}/")
    await expect(page.locator("#state")).to_have_text("connected")
    await publish(EventType.SINGLE_JOB_REFRESH, "\u202eexe.txt\u2028x".encode())
    row = page.locator("#log .row").nth(2)
    await expect(row).to_contain_text("\\u202eexe.txt\\u2028x")
    assert "\u202e" not in await row.text_content()  # type: ignore[operator]


async def test_with_auth_and_origins_the_page_passes_its_token_along(
    redis_server: RedisServer, prefix: str, browser: Browser
) -> None:
    """Behind --auth-secret and --allowed-origins listing its own origin, the page connects
    with ?token= from its own address, and without one it is refused."""
    port = free_port()
    bridge = await start_bridge(
        redis_server.url,
        prefix,
        port=port,
        auth_secret=SECRET,
        allowed_origins=frozenset({"https://elsewhere.example", f"http://127.0.0.1:{port}"}),
    )
    try:
        await bridge.source.wait_subscribed(SUBSCRIBE_TIMEOUT)
        base = f"http://127.0.0.1:{bridge.port}/"
        page = await open_page(browser, f"{base}?token={issue_token(SECRET)}")
        await expect(page.locator("#state")).to_have_text("connected")
        refused = await open_page(browser, base)
        await expect(refused.locator("#state")).to_contain_text("reconnecting")
        assert len(bridge.hub) == 1
    finally:
        await bridge.stop()


async def test_the_page_shows_each_message_of_a_batch(
    bridge: Bridge, publish: Publisher, browser: Browser
) -> None:
    """With ?batch= in the bridge URL, an array frame is shown as its messages."""
    ws = f"ws://127.0.0.1:{bridge.port}/?batch=50"
    page = await open_page(browser, f"http://127.0.0.1:{bridge.port}/?ws={ws}")
    await expect(page.locator("#state")).to_have_text("connected")
    await publish(EventType.JOB_REFRESH, "a")
    await publish(EventType.JOB_REFRESH, "b")
    rows = page.locator("#log .row")
    await expect(rows).to_have_count(4)
    await expect(rows.nth(3)).to_contain_text('{"jobId":"b"}  #2')
    assert await page.locator("#log .row.bad").count() == 0
