"""``--workers N``: N bridge processes on one port (SO_REUSEPORT), for multi-core hosts.

Each worker is a whole bridge (its own Redis subscription, clients, replay ring and
epoch); the kernel spreads new connections over them. This parent only starts them,
restarts one that dies, and passes SIGTERM/SIGINT/SIGHUP on. Workers are started as
``python -m bridge`` with the parent's own arguments plus overrides (argparse keeps
the last value of a flag), and die with the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from bridge.embedded import die_with_parent
from bridge.server import STOP_SIGNALS

log = logging.getLogger("bridge.workers")

#: A worker that exits sooner than this after starting is failing, not crashing once.
QUICK_EXIT = 3.0
RESTART_DELAY = 1.0
STOP_TIMEOUT = 5.0


async def run_workers(argv: Sequence[str], count: int, overrides: Sequence[str]) -> int:
    """Run ``count`` workers until a stop signal (exit 0) or a worker that cannot start (1)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping.set)
    workers: dict[int, asyncio.subprocess.Process] = {}
    started: dict[int, float] = {}

    async def spawn(index: int) -> None:
        env = {**os.environ, "BBB_WORKER": str(index), "PYTHONUNBUFFERED": "1"}
        workers[index] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", *argv, *overrides, "--workers", "1",
            stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=die_with_parent,
        )  # fmt: skip
        started[index] = loop.time()

    try:
        for index in range(1, count + 1):
            await spawn(index)
        log.info(
            "Started %d workers (pids %s)", count, ", ".join(str(w.pid) for w in workers.values())
        )
        stop = asyncio.create_task(stopping.wait())
        while True:
            exits = {asyncio.create_task(w.wait()): i for i, w in workers.items()}
            done, _ = await asyncio.wait({stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
            for task in exits:
                task.cancel()
            if stop in done:
                return await _stop_all(workers)
            for task in done:
                index = exits[task]
                code = workers[index].returncode
                if code == 0:  # stopped on purpose (a signal to that worker alone)
                    log.info("Worker %d stopped", index)
                    del workers[index]
                    continue
                if loop.time() - started[index] < QUICK_EXIT:
                    log.error("Worker %d exited with code %s at start; stopping", index, code)
                    await _stop_all(workers)
                    return 1
                log.warning(
                    "Worker %d exited with code %s; restarting it in %.0fs",
                    index,
                    code,
                    RESTART_DELAY,
                )
                await asyncio.sleep(RESTART_DELAY)
                await spawn(index)
            if not workers:
                return 0
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        for worker in workers.values():
            if worker.returncode is None:
                worker.kill()


async def _stop_all(workers: dict[int, asyncio.subprocess.Process]) -> int:
    """SIGTERM every worker (each closes its clients with 1001), then wait for them."""
    log.info("Stopping %d workers", len(workers))
    for worker in workers.values():
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    waits = [asyncio.wait_for(w.wait(), STOP_TIMEOUT) for w in workers.values()]
    results = await asyncio.gather(*waits, return_exceptions=True)
    return 0 if all(r == 0 for r in results) else 1
