"""The client registry and fan-out: one encoded frame in, written to every open client."""

from __future__ import annotations

import logging

from websockets.asyncio.server import ServerConnection, broadcast

log = logging.getLogger("bridge.hub")


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them.

    :meth:`broadcast` never awaits: each frame is queued on every connection's
    transport at once, so a client that reads slowly delays nobody else.
    """

    def __init__(self) -> None:
        self._clients: set[ServerConnection] = set()
        self.frames_out = 0

    def __len__(self) -> int:
        return len(self._clients)

    def join(self, connection: ServerConnection, greeting: bytes) -> None:
        """Send ``greeting`` first, then every broadcast, to ``connection``.

        Both happen in one synchronous step, so no event can overtake the greeting.
        """
        broadcast((connection,), greeting, text=True)
        self._clients.add(connection)

    def leave(self, connection: ServerConnection) -> None:
        self._clients.discard(connection)

    def broadcast(self, frame: bytes) -> None:
        """Queue one UTF-8 JSON frame (already encoded, once) on every open client."""
        broadcast(self._clients, frame, text=True)
        self.frames_out += len(self._clients)
