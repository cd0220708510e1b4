"""A bridge process's life: the signals that stop it, and children that die with it."""

from __future__ import annotations

import signal
import sys

#: Stop cleanly on these (SIGHUP: the terminal went away, e.g. a closed tmux pane).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child, before exec: get SIGTERM when the parent dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
