"""The client registry and fan-out: a batch of encoded frames in, one write per client.

Server frames are unmasked and uncompressed, so a batch is framed once, as one bytes
object, and that same object is written to every open client: per client, the work
is one check and one ``transport.write`` per batch, whatever the batch holds. No
write waits for a client, so a client that reads slowly delays nobody else.
"""

from __future__ import annotations

from collections.abc import Iterator

from bridge.connection import ClientConnection
from bridge.wsframes import text_frames


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them."""

    def __init__(self) -> None:
        self._clients: set[ClientConnection] = set()
        self.deliveries = 0  # messages queued, times clients (for /metrics)

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ClientConnection]:
        return iter(self._clients)

    def join(self, connection: ClientConnection, first: bytes) -> None:
        """Send ``first`` (framed messages: greeting, session, replay), then every broadcast.

        Both happen in one synchronous step, so no event can overtake or repeat what
        ``first`` holds, and none falls between the two.
        """
        connection.write(first)
        self._clients.add(connection)

    def leave(self, connection: ClientConnection) -> None:
        self._clients.discard(connection)

    def broadcast(self, frames: list[bytes]) -> None:
        """Queue a batch of UTF-8 JSON messages, in order, on every open client."""
        if not self._clients:
            return  # nobody to frame them for
        data = text_frames(frames)
        clients = self._clients
        self.deliveries += len(frames) * len(clients)
        for connection in clients:
            connection.write(data)
