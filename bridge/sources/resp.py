"""One Redis connection spoken in RESP and parsed by hiredis, in bulk: the sources' own link.

Why not redis-py on the hot path: per reply it builds Python objects of its own (a dict per
stream entry, a coroutine round trip per pub/sub message), which cost several times what the
bridge does with them. Here every network read is fed to hiredis (redis-py's own parser) at
once. redis-py still parses the URL; of its options, the address, the credentials, ``db``
and the TLS ones (:func:`~bridge.checks.tls_context`) apply: the timeouts do not (the bridge
has its own, ``--redis-timeout``).
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
    """Redis refused the connection, the credentials or a command (one line)."""


def command(*args: bytes | str | int) -> bytes:
    """Encode one RESP command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisLink:
    """Connected and authenticated (see :meth:`open`); commands are written with :meth:`send`
    and their replies read, in order, with :meth:`reply`/:meth:`replies`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str, *, timeout: float, select: bool = True) -> RedisLink:
        """Connect to ``url``, authenticate if it says so and (``select``) choose its db."""
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        async with asyncio.timeout(timeout):
            if "path" in options:
                reader, writer = await asyncio.open_unix_connection(options["path"])
            else:
                context = tls_context(options)
                reader, writer = await asyncio.open_connection(
                    options.get("host", "localhost"), options.get("port", 6379), ssl=context
                )
            link = cls(reader, writer)
            try:
                if options.get("password"):
                    user = options.get("username")
                    auth = (
                        ("AUTH", user, options["password"])
                        if user
                        else ("AUTH", options["password"])
                    )
                    await link.call(*auth)
                if select and options.get("db"):
                    await link.call("SELECT", options["db"])
            except BaseException:
                await link.close()
                raise
        return link

    def send(self, *args: bytes | str | int) -> None:
        self._writer.write(command(*args))

    def send_all(self, commands: list[bytes]) -> None:
        """Commands already encoded (:func:`command`), in one write: a pipeline."""
        self._writer.write(b"".join(commands))

    async def call(self, *args: bytes | str | int) -> Any:
        """One command's reply; a Redis error raises RedisRefused."""
        self.send(*args)
        return await self.reply()

    async def reply(self) -> Any:
        """The next reply; a Redis error raises RedisRefused."""
        reply = await self._next()
        if isinstance(reply, hiredis.ReplyError):
            raise RedisRefused(str(reply))
        return reply

    async def replies(self, n: int) -> list[Any]:
        """The next ``n`` replies, errors among them as :class:`hiredis.ReplyError` values."""
        return [await self._next() for _ in range(n)]

    async def _next(self) -> Any:
        while True:
            try:
                reply = self._parser.gets()
            except hiredis.ProtocolError as exc:  # not Redis at the other end
                raise RedisRefused(f"not a Redis reply: {exc}") from None
            if reply is not False:
                return reply
            await self.feed()

    async def feed(self) -> None:
        """Read what the network has (waiting for it); raise ConnectionError at its end."""
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("Redis closed the connection")
        self._parser.feed(data)

    def parsed(self) -> list[Any]:
        """Every reply complete in what was read so far (maybe none)."""
        found = []
        gets = self._parser.gets
        try:
            while (reply := gets()) is not False:
                found.append(reply)
        except hiredis.ProtocolError as exc:
            raise RedisRefused(f"not a Redis reply: {exc}") from None
        return found

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
