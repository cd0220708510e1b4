"""A pattern subscription read in bulk: one :class:`~bridge.sources.resp.RedisLink`.

Why not redis-py's PubSub: ``get_message()`` costs tens of microseconds per message
(a coroutine round trip and a dict per message), which caps the bridge far below
what Redis can publish. Here every network read is parsed at once and all the messages
in it come back as one list.
"""

from __future__ import annotations

import asyncio

import hiredis

from bridge.sources.resp import RedisLink, RedisRefused, command

__all__ = ["PatternSubscription", "RedisRefused", "command"]


class PatternSubscription:
    """Connected, authenticated and subscribed to one pattern; see :meth:`open`."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    @classmethod
    async def open(cls, url: str, pattern: str, *, timeout: float = 5.0) -> PatternSubscription:
        """Connect to ``url``, authenticate if it says so, and PSUBSCRIBE to ``pattern``."""
        async with asyncio.timeout(timeout):
            link = await RedisLink.open(url, timeout=timeout, select=False)  # any db's
            try:
                reply = await link.call("PSUBSCRIBE", pattern)
                if not (isinstance(reply, list) and reply[:1] == [b"psubscribe"]):
                    raise RedisRefused(f"unexpected reply to PSUBSCRIBE: {reply!r}"[:200])
            except BaseException:
                await link.close()
                raise
        return cls(link)

    async def read_batch(self, timeout: float) -> list[tuple[bytes, bytes]] | None:
        """Wait up to ``timeout`` for data; return every message it completes (maybe none).

        Returns None when nothing at all arrived in time (the caller may PING), and an
        empty list when only non-messages (a PONG) arrived. Raises ConnectionError when
        Redis closes the connection.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._link.feed()
        except TimeoutError:
            return None
        messages = []
        for reply in self._link.parsed():
            if type(reply) is list and len(reply) == 4 and reply[0] == b"pmessage":
                messages.append((reply[2], reply[3]))
            elif isinstance(reply, hiredis.ReplyError):
                raise RedisRefused(str(reply))
        return messages

    def ping(self) -> None:
        """Ask for a PONG (allowed while subscribed): proof that Redis still answers."""
        self._link.send("PING")

    async def close(self) -> None:
        await self._link.close()
