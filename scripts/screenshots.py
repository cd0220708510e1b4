"""Make the README's screenshots from a scripted session with real traffic.

    python -m scripts.screenshots [--out screenshots]

Starts a private redis-server and a bridge, runs bbb-tui headless at 120x40 and
80x24 against them, publishes a realistic stream through Redis, then runs the demo's
real BullMQ workers and shows their queues, jobs and one job; saves SVGs (Textual) and
PNGs (rsvg-convert, from Debian's librsvg2-bin, if installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys

import redis.asyncio as aioredis

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.client import ConnState
from bridge.config import Settings
from bridge.core.protocol import DEFAULT_PREFIX, EventType, channel_name
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from bridge.tools.simulate import LoadPlan, publish_load


async def until(predicate: object, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if predicate() or loop.time() > deadline:  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)


async def traffic(client: aioredis.Redis) -> None:
    """A minute of a busy Better Bull Board, compressed: bursts, logs, queues, schedulers."""
    await publish_load(client, DEFAULT_PREFIX, LoadPlan(count=3, rate=20, burst=40))
    for job in ("import-7731", "import-7732", "email-991"):
        for _ in range(3):
            await client.publish(channel_name(DEFAULT_PREFIX, EventType.JOB_LOG_REFRESH), job)
        await client.publish(channel_name(DEFAULT_PREFIX, EventType.LOG_REFRESH), job)
    for queue in ("emails", "imports", "emails", "reports"):
        await client.publish(channel_name(DEFAULT_PREFIX, EventType.SINGLE_QUEUE_REFRESH), queue)
        await client.publish(channel_name(DEFAULT_PREFIX, EventType.QUEUE_REFRESH), queue)
    await client.publish(
        channel_name(DEFAULT_PREFIX, EventType.JOB_SCHEDULER_REFRESH), "nightly-report"
    )


async def shoot(url: str, redis_url: str, out: str, size: tuple[int, int], name: str) -> list[str]:
    app = BbbApp(TuiSettings(url=url, redis_url=redis_url))
    client = aioredis.Redis.from_url(redis_url)
    saved = []
    try:
        async with app.run_test(size=size) as pilot:
            await until(lambda: app.status.state is ConnState.CONNECTED)
            await traffic(client)
            await pilot.press("a")
            await until(lambda: app.monitor.events >= 150)
            await asyncio.sleep(1.2)  # let the simulated fetches finish and the rate settle
            app.flush(force=True)
            await pilot.pause()
            saved.append(app.save_screenshot(f"{name}.svg", out))
            if size[0] >= 120:
                await pilot.press("question_mark")
                await pilot.pause()
                saved.append(app.save_screenshot("help.svg", out))
                await pilot.press("escape", "f")
                await pilot.pause()
                saved.append(app.save_screenshot("filter.svg", out))
                await pilot.press("escape", "k", "k", "k", "enter")  # a log line, opened
                await pilot.pause()
                saved.append(app.save_screenshot("details.svg", out))
                await pilot.press("escape", "tab", "enter")  # a cache key's history
                await pilot.pause()
                saved.append(app.save_screenshot("history.svg", out))
    finally:
        await client.aclose()
    return saved


async def shoot_bullmq(redis_url: str, out: str) -> list[str]:
    """The real-data views: the demo's BullMQ workers for a while, read by a bridge with
    ``--source bullmq``; then the queues view, the jobs view and one failed job."""
    from bbb_tui.bullmq_workload import BullmqWorkload
    from bbb_tui.widgets.bullmq import JobScreen, JobsView

    bridge = Bridge(
        Settings(host="127.0.0.1", port=0, redis_url=redis_url, source="bullmq", rescan=1.0)
    )
    await bridge.start()
    workload = BullmqWorkload(redis_url, rate=25)
    saved = []
    try:
        await bridge.wait_ready(10)
        await workload.start()
        await asyncio.sleep(12)  # a backlog, failures and timings to show
        settings = TuiSettings(url=f"ws://127.0.0.1:{bridge.port}", redis_url=redis_url,
                               data="bullmq")  # fmt: skip
        app = BbbApp(settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: app.status.state is ConnState.CONNECTED)
            await until(lambda: app.monitor.events >= 400, 20)
            app.flush(force=True)
            await pilot.pause()
            saved.append(app.save_screenshot("bullmq-queues.svg", out))
            await pilot.press("v")
            jobs = app.query_one(JobsView)
            await until(lambda: jobs.row_count > 5)
            await pilot.pause()
            saved.append(app.save_screenshot("bullmq-jobs.svg", out))
            rows = [str(jobs.get_row_at(n)[3]) for n in range(jobs.row_count)]
            jobs.move_cursor(row=rows.index("failed") if "failed" in rows else 0)
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, JobScreen))
            await asyncio.sleep(1.0)
            await pilot.pause()
            saved.append(app.save_screenshot("bullmq-job.svg", out))
    finally:
        await workload.stop()
        await bridge.stop()
    return saved


def to_png(svg: str) -> str | None:
    """Render an SVG to PNG with rsvg-convert (keeping the terminal's runs of spaces)."""
    if shutil.which("rsvg-convert") is None:
        return None
    with open(svg) as f:
        text = f.read().replace("<svg ", '<svg xml:space="preserve" ', 1)
    png = svg[: -len(".svg")] + ".png"
    subprocess.run(["rsvg-convert", "-o", png], input=text.encode(), check=True)
    return png


async def shoot_page(port: int, redis_url: str, out: str) -> str | None:
    """The bridge's live page in headless Chromium (if installed), with real traffic."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    from playwright.async_api import async_playwright

    client = aioredis.Redis.from_url(redis_url)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium)
            page = await browser.new_page(viewport={"width": 1100, "height": 520})
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_selector("#state[data-state=connected]")
            await traffic(client)
            await page.wait_for_function("document.querySelectorAll('#log .row').length > 60")
            path = os.path.join(out, "page.png")
            await page.screenshot(path=path)
            await browser.close()
            return path
    finally:
        await client.aclose()


async def main(out: str) -> int:
    os.makedirs(out, exist_ok=True)
    with RedisServer() as redis_server:
        bridge = Bridge(Settings(host="127.0.0.1", port=0, redis_url=redis_server.url))
        await bridge.start()
        try:
            await bridge.source.wait_subscribed(10)
            url = f"ws://127.0.0.1:{bridge.port}"
            saved = await shoot(url, redis_server.url, out, (120, 40), "main")
            saved += await shoot(url, redis_server.url, out, (80, 24), "main-80x24")
            page = await shoot_page(bridge.port, redis_server.url, out)
            print(f"wrote {page}" if page else "no chromium: no page.png")
        finally:
            await bridge.stop()
        saved += await shoot_bullmq(redis_server.url, out)
    for svg in saved:
        png = to_png(svg)
        print(f"wrote {svg}" + (f" and {png}" if png else " (no rsvg-convert: no PNG)"))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="screenshots")
    sys.exit(asyncio.run(main(parser.parse_args().out)))
