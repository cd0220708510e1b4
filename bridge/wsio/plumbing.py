"""What both ends of a WebSocket need around websockets' sans-I/O protocol (no asyncio
server or client of the library's, which cost a task per connection): send what the
protocol has to send, end the TCP connection with it, and keep a quiet peer honest.

The bridge's peers (:mod:`bridge.serving.peer`) and the TUI's connection
(:mod:`bbb_tui.wire`) share these; neither knows the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from websockets.protocol import Protocol, State

#: A closing handshake that takes longer than this is cut short (the TCP connection aborted).
CLOSE_TIMEOUT = 1.0


def pump(protocol: Protocol, transport: asyncio.Transport | None, close_timeout: float) -> None:
    """Write out what a sans-I/O protocol has to send, and end the TCP connection with it.

    Call after every ``receive_*()`` or ``send_*()``: an empty chunk means half-close;
    once the closing handshake is over the connection is closed, and while it is under
    way it is aborted if the peer has not finished it within ``close_timeout``.
    """
    if transport is None or transport.is_closing():
        return
    for data in protocol.data_to_send():
        if data:
            transport.write(data)
        elif transport.can_write_eof():
            transport.write_eof()
    if protocol.close_expected():
        if protocol.state is State.CLOSED:
            transport.close()
        else:
            asyncio.get_running_loop().call_later(close_timeout, transport.abort)


def keep_alive(
    protocol: Protocol,
    transport: asyncio.Transport | None,
    idle: float,
    interval: float,
    flush: Callable[[], None] | None = None,
) -> bool:
    """Ping a peer quiet for ``interval``; drop one quiet for twice that (return False).

    Any data counts as a sign of life, a pong included. ``flush`` sends the ping (default:
    :func:`pump`).
    """
    if idle >= 2 * interval:
        if transport is not None:
            transport.abort()
        return False
    if idle >= interval and protocol.state is State.OPEN:
        protocol.send_ping(b"")
        if flush is not None:
            flush()
        else:
            pump(protocol, transport, CLOSE_TIMEOUT)
    return True


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended: a cancelled task is not over yet (its
    cleanup runs later), and what it holds (a connection, a pool) must outlive it."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
