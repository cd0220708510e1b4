"""How much load bbb-tui absorbs: messages, CPU and key-press latency, headless at 120x40.

    python -m bench.tui_ingest --rate 20000 --seconds 10
    python -m bench.tui_ingest --rate 20000 --modes following looking-back search record all

A feeder process streams bridge-like frames over a real WebSocket; the app runs
headless in this process. Key presses are injected as key events every 100 ms and
timed from injection to the action handler. CPU is this process's CPU time over the
streaming window (the feeder's is not counted).

With ``--modes``, no keys are pressed: each run measures CPU per event with the log
following (the default), looking back (scrolled up, counting new lines), a search
marking its matches in every line drawn, ``--record`` writing every frame to a file,
and all of them at once; compare the ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
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


MODES = ("following", "looking-back", "search", "record", "all")


def set_mode(app: BbbApp, mode: str) -> None:
    if mode in ("looking-back", "all"):
        app.event_log.following = False  # as scrolling up does
    if mode in ("search", "all"):
        app._search("job-1")  # marks every line drawn; the newest match shown


async def run(
    rate: float, seconds: float, mode: str | None = None, record: str | None = None
) -> dict[str, float]:
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
        app = TimedApp(TuiSettings(url=f"ws://127.0.0.1:{port}", record=record))
        app.latencies = []
        async with app.run_test(size=(120, 40), headless=True):
            await until(lambda: app.status.state is ConnState.CONNECTED, 10)
            if mode is not None:
                set_mode(app, mode)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            sent_line = asyncio.ensure_future(feeder.stdout.readline())
            while not sent_line.done():
                if mode is None:  # key latency, under load
                    app.key_sent = time.perf_counter()
                    app.post_message(events.Key("p", "p"))
                await asyncio.sleep(KEY_INTERVAL)
            sent = int((await sent_line).split()[1])
            await until(lambda: app.monitor.events >= sent, 10)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            absorbed = app.monitor.events
        lat = sorted(app.latencies) or [0.0]
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
    parser.add_argument("--modes", nargs="+", choices=MODES, help="CPU per event, per mode")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    if args.modes:
        compare_modes(args.rate, args.seconds, args.modes)
        return
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


def compare_modes(rates: list[float], seconds: float, modes: list[str]) -> None:
    print(
        f"{'rate/s':>8} {'mode':>13} {'absorbed':>9} {'core %':>7} "
        f"{'CPU us/event':>13} {'vs following':>13}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for rate in rates:
            base: float | None = None
            for mode in modes:
                record = (
                    os.path.join(folder, f"{mode}.jsonl") if mode in ("record", "all") else None
                )
                r = asyncio.run(run(rate, seconds, mode, record))
                per_event = r["cpu"] / max(r["absorbed"], 1) * 1e6
                base = per_event if base is None else base
                print(
                    f"{rate:>8,.0f} {mode:>13} {r['absorbed']:>9,.0f} "
                    f"{100 * r['cpu'] / r['wall']:>6.0f}% {per_event:>13.1f} "
                    f"{per_event / base:>12.2f}x"
                )


if __name__ == "__main__":
    main()
