"""Capped exponential backoff with full jitter (pure; shared by the bridge and the TUI)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for retry *n*: uniform in ``[floor, min(cap, base * 2**n)]``.

    Full jitter keeps many clients that lost the same server from retrying in step;
    the small floor keeps a client from spinning when the random draw is near zero.
    Call :meth:`reset` once a connection has proved stable.
    """

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        floor: float = 0.05,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        self.base, self.cap, self.floor = base, cap, floor
        self._rand = rand
        self.attempt = 0

    def ceiling(self) -> float:
        """The largest delay the next call may return."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 62))

    def next_delay(self) -> float:
        """Return the delay before the next retry and count the attempt."""
        delay = max(self.floor, self._rand() * self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (after a connection has been stable)."""
        self.attempt = 0
