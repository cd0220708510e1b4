"""The client registry and fan-out: a batch of encoded frames in, one write per client.

Server frames are unmasked and uncompressed, so a batch is framed once, as one bytes
object, and that same object is written to every open client: per client, the work
is one check and one ``transport.write`` per batch, whatever the batch holds. No
write waits for a client, so a client that reads slowly delays nobody else.
"""

from __future__ import annotations

import logging

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.protocol import State

from bridge.wsframes import text_frames

log = logging.getLogger("bridge.hub")


class Hub:
    """Every open WebSocket connection, and a non-blocking broadcast to all of them."""

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

    def broadcast(self, frames: list[bytes]) -> None:
        """Queue a batch of UTF-8 JSON messages, in order, on every open client.

        The frames go straight to each connection's transport, between whole frames of
        the library's own (pings, closes), which is what its own ``broadcast`` does too;
        a connection that is closing gets nothing more.
        """
        data = text_frames(frames)
        sent = 0
        for connection in self._clients:
            if connection.protocol.state is State.OPEN:
                connection.transport.write(data)
                sent += 1
        self.frames_out += sent * len(frames)
