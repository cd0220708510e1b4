"""A bridge process's life: the signals that stop it, children that die with it, and the
event loop's own error reports, kept to a line a second."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys

from bridge.core.loglimit import LogLimiter

log = logging.getLogger("bridge")

#: Stop cleanly on these (SIGHUP: the terminal went away, e.g. a closed tmux pane).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child, before exec: get SIGTERM when the parent dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LoopErrors:
    """The event loop's error reports, at most a few a second with a count.

    At the open-files limit asyncio's accept loop reports every failed ``accept()``, with
    a traceback, up to a thousand times per wake-up: thousands of lines a second. Those
    become one line per second, without the traceback (the server retries by itself);
    anything else is logged as asyncio would, but no more often.
    """

    RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(self) -> None:
        self._log_limit = LogLimiter(1.0, max_per_interval=5)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        message = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        suppressed = self._log_limit.allow(message)
        if suppressed is None:
            return
        more = f" (+{suppressed} more since last report)" if suppressed else ""
        if isinstance(exc, OSError) and exc.errno in self.RESOURCE_ERRORS:
            log.error(
                "%s: %s; new connections wait until some close (raise the open-files "
                "limit, or set --max-connections below it)%s",
                message,
                exc.strerror,
                more,
            )
            return
        loop.default_exception_handler({**context, "message": message + more})


async def until_a_stop_signal() -> signal.Signals:
    """Wait for SIGTERM, SIGINT or SIGHUP (the loop's own errors reported a line a second
    meanwhile, see :class:`LoopErrors`); return which came."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrors())
    came: asyncio.Future[signal.Signals] = loop.create_future()

    def stop(sig: signal.Signals) -> None:
        if not came.done():
            came.set_result(sig)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await came
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
