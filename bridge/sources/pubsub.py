"""A pattern subscription read in bulk: one Redis connection, RESP parsed by hiredis.

Why not redis-py's PubSub: ``get_message()`` costs tens of microseconds per message
(a coroutine round trip and a dict per message), which caps the bridge far below
what Redis can publish. Here every network read is fed to hiredis (redis-py's own
parser) at once and all the messages in it come back as one list. redis-py still
parses the URL; of its options, a subscription uses the address, the credentials and
the TLS ones (:func:`tls_context`): ``db`` and the timeouts do not apply here (the
bridge has its own, ``--redis-timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis
from redis.connection import parse_url

from bridge.checks import tls_context

READ_SIZE = 1 << 18  # bytes per read: a burst arrives in few reads


class RedisRefused(ConnectionError):
    """Redis refused the connection, the credentials or the subscription (one line)."""


def command(*args: bytes | str) -> bytes:
    """Encode one RESP command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


PING = command("PING")


class PatternSubscription:
    """Connected, authenticated and subscribed to one pattern; see :meth:`open`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str, pattern: str, *, timeout: float = 5.0) -> PatternSubscription:
        """Connect to ``url``, authenticate if it says so, and PSUBSCRIBE to ``pattern``."""
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        async with asyncio.timeout(timeout):
            if "path" in options:
                reader, writer = await asyncio.open_unix_connection(options["path"])
            else:
                context = tls_context(options)
                reader, writer = await asyncio.open_connection(
                    options.get("host", "localhost"), options.get("port", 6379), ssl=context
                )
            subscription = cls(reader, writer)
            try:
                if options.get("password"):
                    user = options.get("username")
                    args = (
                        ("AUTH", user, options["password"])
                        if user
                        else ("AUTH", options["password"])
                    )
                    await subscription._call(command(*args))
                writer.write(command("PSUBSCRIBE", pattern))
                reply = await subscription._reply()
                if not (isinstance(reply, list) and reply[:1] == [b"psubscribe"]):
                    raise RedisRefused(f"unexpected reply to PSUBSCRIBE: {reply!r}"[:200])
            except BaseException:
                await subscription.close()
                raise
        return subscription

    async def _call(self, request: bytes) -> Any:
        self._writer.write(request)
        return await self._reply()

    async def _reply(self) -> Any:
        while True:
            try:
                reply = self._parser.gets()
            except hiredis.ProtocolError as exc:
                raise RedisRefused(f"not a Redis reply: {exc}") from None
            if reply is not False:
                break
            data = await self._reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._parser.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisRefused(str(reply))
        return reply

    async def read_batch(self, timeout: float) -> list[tuple[bytes, bytes]] | None:
        """Wait up to ``timeout`` for data; return every message it completes (maybe none).

        Returns None when nothing at all arrived in time (the caller may PING), and an
        empty list when only non-messages (a PONG) arrived. Raises ConnectionError when
        Redis closes the connection.
        """
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            return None
        if not data:
            raise ConnectionError("Redis closed the connection")
        self._parser.feed(data)
        messages = []
        gets = self._parser.gets
        try:
            while (reply := gets()) is not False:
                if type(reply) is list and len(reply) == 4 and reply[0] == b"pmessage":
                    messages.append((reply[2], reply[3]))
                elif isinstance(reply, hiredis.ReplyError):
                    raise RedisRefused(str(reply))
        except hiredis.ProtocolError as exc:  # not Redis at the other end, or a broken stream
            raise RedisRefused(f"not a Redis reply: {exc}") from None
        return messages

    def ping(self) -> None:
        """Ask for a PONG (allowed while subscribed): proof that Redis still answers."""
        self._writer.write(PING)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
