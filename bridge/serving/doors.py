"""How many get in, and what the turned away are told.

Every connection from accept to close (open, opening or half-open) holds a file, so the
doors count them all against the connection limit and the open-files limit; the hub, by
contrast, knows only the open clients it broadcasts to. Refusals (503 when full, the
admission's 400/401/403/404) are counted for ``/metrics`` and logged a line a second.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from http import HTTPStatus

from websockets.http11 import Response

from bridge.core.loglimit import LogLimiter
from bridge.ops.metrics import BridgeStats
from bridge.serving.admission import Refused
from bridge.serving.http import TOO_MANY, refusal
from bridge.serving.peer import Peer

log = logging.getLogger("bridge")

#: File descriptors kept for everything but client connections (Redis, the listening
#: sockets, logs, the process's own).
RESERVED_FILES = 64
#: Connections answered 503 at once (and closing) at most; past it, closed without a word.
MAX_REFUSING = 32


def connections_the_files_allow(soft: int | None = None) -> int:
    """How many connections the open-files limit (this process's, or ``soft``) leaves
    room for (see RESERVED_FILES)."""
    if soft is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - RESERVED_FILES - MAX_REFUSING, 8)


class Doors:
    """The connections that hold a file, against ``max_connections`` (0: as many as the
    open-files limit allows)."""

    def __init__(self, max_connections: int, stats: BridgeStats) -> None:
        self.connections: set[Peer] = set()  # open, opening and half-open
        self._refusing: set[Peer] = set()  # answered 503, closing
        self._stats = stats
        #: Open files for clients: past it, accepting waits (see Listener).
        self._files = connections_the_files_allow()
        self._configured = bool(max_connections)
        #: Connections past which new ones are refused (503).
        self.limit = max_connections or self._files
        self.all_gone = asyncio.Event()  # set whenever no connection is left
        self._log = LogLimiter(1.0)

    def room(self, accepting: int) -> bool:
        """Whether one more connection (beyond ``accepting``, being accepted now) leaves
        enough open files (see RESERVED_FILES); the listener waits while it does not."""
        used = len(self.connections) + len(self._refusing) + accepting
        if used < self._files:
            return True
        if self._log.allow("files") is not None:
            log.warning(
                "%d connections: as many as the open-files limit allows; new ones wait "
                "until some close",
                used,
            )
        return False

    def enter(self, connection: Peer) -> None:
        """A connection just accepted: counted, or, past the limit, set to be refused (a
        503 while few are being refused; past that, closed without a word)."""
        if len(self.connections) < self.limit:
            self.connections.add(connection)
            self.all_gone.clear()
            return
        self._stats.refused[HTTPStatus.SERVICE_UNAVAILABLE.value] += 1
        polite = len(self._refusing) < MAX_REFUSING
        connection.refuse_with = TOO_MANY if polite else b""
        if polite:
            self._refusing.add(connection)
        suppressed = self._log.allow("503")
        if suppressed is not None:
            why = "--max-connections" if self._configured else "open files"
            log.warning(
                "Refused a connection: 503: %d open (%s)%s", self.limit, why, _more(suppressed)
            )

    def refuse(self, connection: Peer, refused: Refused) -> Response:
        """The answer to a request that admission turned down, counted and logged."""
        status = refused.status
        self._stats.refused[status.value] += 1
        suppressed = self._log.allow(f"{status.value}")
        if suppressed is not None:
            log.warning(
                "Refused %s: %d %s: %s%s",
                connection.peer,
                status,
                status.phrase,
                refused.why,
                _more(suppressed),
            )
        return refusal(status, refused.why)

    def leave(self, connection: Peer) -> None:
        """A connection is gone (open or not, refused or not)."""
        self.connections.discard(connection)
        self._refusing.discard(connection)
        if not self.connections:
            self.all_gone.set()


def _more(suppressed: int) -> str:
    return f" (+{suppressed} more since last report)" if suppressed else ""
