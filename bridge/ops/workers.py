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

from bridge.core.backoff import Backoff
from bridge.ops.lifecycle import STOP_SIGNALS, die_with_parent

log = logging.getLogger("bridge.workers")

#: A worker that stayed up this long is healthy: its next crash restarts it at once.
STABLE_AFTER = 60.0
STOP_TIMEOUT = 5.0
#: The variable that hands a worker the pipe it writes to once it listens.
READY_FD = "BBB_READY_FD"


async def run_workers(argv: Sequence[str], count: int, overrides: Sequence[str]) -> int:
    """Run ``count`` workers until a stop signal (exit 0) or a worker that cannot start (1).

    A worker that exits with an error before it ever listened has a configuration that
    cannot work: all stop. One that dies later, whatever killed it (a signal included),
    is restarted, after 1 s doubling to 30 s while it keeps dying young.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping.set)
    workers: dict[int, asyncio.subprocess.Process] = {}
    ready: dict[int, int] = {}  # the read end of each worker's readiness pipe
    started: dict[int, float] = {}
    backoffs = {index: Backoff(base=1.0, cap=30.0) for index in range(1, count + 1)}

    async def spawn(index: int) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        env = {
            **os.environ,
            "BBB_WORKER": str(index),
            "PYTHONUNBUFFERED": "1",
            READY_FD: str(write_end),
        }
        try:
            workers[index] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", *argv, *overrides, "--workers", "1",
                stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=die_with_parent,
                pass_fds=(write_end,),
            )  # fmt: skip
        finally:
            os.close(write_end)
        ready[index] = read_end
        started[index] = loop.time()

    def listened(index: int) -> bool:
        try:
            return os.read(ready[index], 1) == b"1"
        except BlockingIOError:
            return False
        finally:
            os.close(ready.pop(index))

    try:
        for index in range(1, count + 1):
            await spawn(index)
        log.info(
            "Started %d workers (pids %s)", count, ", ".join(str(w.pid) for w in workers.values())
        )
        stop = asyncio.create_task(stopping.wait())
        restarts: dict[int, float] = {}  # worker -> when to start it again
        while True:
            exits = {asyncio.create_task(w.wait()): i for i, w in workers.items()}
            wake = min(restarts.values(), default=None)
            timeout = None if wake is None else max(wake - loop.time(), 0.0)
            done, _ = await asyncio.wait(
                {stop, *exits}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in exits:
                task.cancel()
            if stop in done:  # even during a restart's wait: stopping comes first
                return await _stop_all(workers)
            for task in done:
                index = exits[task]
                code = workers.pop(index).returncode
                ever_listened = listened(index)
                if code == 0:  # stopped on purpose (a signal to that worker alone)
                    log.info("Worker %d stopped", index)
                    continue
                if not ever_listened and code is not None and code > 0:
                    log.error("Worker %d exited with code %s at start; stopping", index, code)
                    await _stop_all(workers)
                    return 1
                backoff = backoffs[index]
                if loop.time() - started[index] >= STABLE_AFTER:
                    backoff.reset()
                delay = backoff.next_delay()
                restarts[index] = loop.time() + delay
                log.warning(
                    "Worker %d exited with code %s; restarting it in %.1fs", index, code, delay
                )
            for index, when in list(restarts.items()):
                if when <= loop.time():
                    del restarts[index]
                    await spawn(index)
                    log.info("Worker %d restarted (pid %d)", index, workers[index].pid)
            if not workers and not restarts:
                return 0
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        for worker in workers.values():
            if worker.returncode is None:
                worker.kill()
        for read_end in ready.values():
            os.close(read_end)


def say_ready() -> None:
    """In a worker: tell the parent it listens (see READY_FD); nothing outside ``--workers``."""
    if fd := os.environ.pop(READY_FD, ""):
        with contextlib.suppress(OSError, ValueError):
            os.write(int(fd), b"1")
            os.close(int(fd))


async def _stop_all(workers: dict[int, asyncio.subprocess.Process]) -> int:
    """SIGTERM every worker (each closes its clients with 1001), then wait for them."""
    log.info("Stopping %d workers", len(workers))
    for worker in workers.values():
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    waits = [asyncio.wait_for(w.wait(), STOP_TIMEOUT) for w in workers.values()]
    results = await asyncio.gather(*waits, return_exceptions=True)
    # A worker our SIGTERM caught before it could handle it (just restarted) stopped too.
    return 0 if all(r in (0, -signal.SIGTERM) for r in results) else 1
