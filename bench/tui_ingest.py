"""How much load bbb-tui absorbs: messages, CPU and key-press latency, headless at 120x40.

    python -m bench.tui_ingest --rate 20000 --seconds 10

A feeder process streams bridge-like frames over a real WebSocket; the app runs
headless in this process. Key presses are injected as key events every 100 ms and
timed from injection to the action handler. CPU is this process's CPU time over the
streaming window (the feeder's is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable

from textual import events

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.client import ConnState
from bench.machine import ROOT, describe

KEY_INTERVAL = float(os.environ.get("KEY_INTERVAL", "0.25"))  # seconds between key presses


class TimedApp(BbbApp):
    """The real app, timing each pause toggle from key injection to handler."""

    key_sent: float = 0.0
    latencies: list[float]

    def action_toggle_pause(self) -> None:
        self.latencies.append(time.perf_counter() - self.key_sent)
        super().action_toggle_pause()


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll until ``predicate`` holds or ``timeout`` passes (then carry on and report)."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate() or time.perf_counter() > deadline:
            return
        await asyncio.sleep(0.01)


async def run(rate: float, seconds: float) -> dict[str, float]:
    feeder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.feeder",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert feeder.stdout is not None
        port = int((await feeder.stdout.readline()).split()[1])
        app = TimedApp(TuiSettings(url=f"ws://127.0.0.1:{port}"))
        app.latencies = []
        async with app.run_test(size=(120, 40), headless=True):
            await until(lambda: app.status.state is ConnState.CONNECTED, 10)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            sent_line = asyncio.ensure_future(feeder.stdout.readline())
            while not sent_line.done():
                app.key_sent = time.perf_counter()
                app.post_message(events.Key("p", "p"))
                await asyncio.sleep(KEY_INTERVAL)
            sent = int((await sent_line).split()[1])
            await until(lambda: app.monitor.events >= sent, 10)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            absorbed = app.monitor.events
        lat = sorted(app.latencies)
        return {
            "sent": sent,
            "absorbed": absorbed,
            "wall": wall,
            "cpu": cpu,
            "p50": statistics.median(lat) * 1000,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "keys": len(lat),
        }
    finally:
        feeder.kill()
        await feeder.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, nargs="+", default=[5000, 20000])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(f"machine: {describe()}")
    print(
        f"{'rate/s':>8} {'sent':>8} {'absorbed':>9} {'CPU s':>6} {'core %':>7} "
        f"{'key p50 ms':>10} {'key p99 ms':>10}"
    )
    for rate in args.rate:
        r = asyncio.run(run(rate, args.seconds))
        print(
            f"{rate:>8,.0f} {r['sent']:>8,.0f} {r['absorbed']:>9,.0f} {r['cpu']:>6.2f} "
            f"{100 * r['cpu'] / r['wall']:>6.0f}% {r['p50']:>10.1f} {r['p99']:>10.1f}"
        )


if __name__ == "__main__":
    main()
