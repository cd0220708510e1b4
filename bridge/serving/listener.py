"""The listening sockets, and an accept loop that backs off instead of snowballing.

Why not ``loop.create_server``: at the open-files limit, CPython's accept loop logs
every failed ``accept()`` with a traceback and schedules a retry for each, up to its
backlog (1,024) per wake-up: thousands of log lines and timers a second, at 70% of a
core, for as long as the limit holds. Here each wake-up accepts at most
``ACCEPT_BATCH`` connections, and only while ``room()`` says there are files to spare;
at the limit (or on ``EMFILE``) accepting pauses, with one timer, and connections wait in
the kernel's queue (``LISTEN_QUEUE``) until some close.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from bridge.core.loglimit import LogLimiter

log = logging.getLogger("bridge")

ACCEPT_BATCH = 64
LISTEN_QUEUE = 4096
#: How long accepting pauses when the files run out.
PAUSE = 0.1
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Listener:
    """Listens on ``host:port`` (every address it resolves to) and hands each accepted
    connection to ``factory``'s protocol, as long as ``room(accepting)`` is true (given
    how many it is handing over already)."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        room: Callable[[int], bool],
        reuse_port: bool,
    ) -> None:
        self._factory = factory
        self._room = room
        self._reuse_port = reuse_port
        self._sockets: list[socket.socket] = []
        self._paused: asyncio.TimerHandle | None = None
        self._log_limit = LogLimiter(1.0)
        self.accepting = 0  # accepted, not yet handed to their protocol

    @property
    def port(self) -> int:
        port: int = self._sockets[0].getsockname()[1]
        return port

    def listen(self, host: str, port: int) -> None:
        """Bind and listen (raises OSError: a port in use...), then start accepting."""
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(addresses):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self._reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self._sockets) > 1:  # one free port for every address
                    address = (address[0], self.port, *address[2:])
                sock.bind(address)
                sock.listen(LISTEN_QUEUE)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        self._resume()

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []

    def _resume(self) -> None:
        self._paused = None
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        if self._paused is not None:
            return
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
        self._paused = loop.call_later(PAUSE, self._resume)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._room(self.accepting):
                self._pause()  # they wait in the kernel's queue until some close
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                suppressed = self._log_limit.allow("resources")
                if suppressed is not None:
                    more = f" (+{suppressed} more since last report)" if suppressed else ""
                    log.error(
                        "Cannot accept connections: %s; new ones wait until some close "
                        "(raise the open-files limit, or set --max-connections)%s",
                        exc.strerror,
                        more,
                    )
                self._pause()
                return
            conn.setblocking(False)
            self.accepting += 1
            asyncio.get_running_loop().create_task(self._hand_over(conn))

    async def _hand_over(self, conn: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._factory, conn)
        except OSError:
            conn.close()
        finally:
            self.accepting -= 1
