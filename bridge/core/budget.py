"""A token bucket (pure, with the caller's clock): the work clients may make the bridge do.

Each client has one (its frames per second), and all clients share one: frames, and the
names in subscription frames, cost it. A client whose bucket, or the shared one, is
empty is read later (its bytes wait in its own TCP buffer), so no number of clients can
take the event loop from the events.
"""

from __future__ import annotations

from collections.abc import Callable


class Budget:
    """``rate`` units a second, up to ``burst`` saved; spending may go below zero (a debt
    that the refill pays back first)."""

    __slots__ = ("_clock", "_last", "burst", "level", "rate")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self.level = burst
        self._last = clock()

    def available(self) -> float:
        """Units there are now (refilled for the time that passed)."""
        now = self._clock()
        self.level = min(self.level + (now - self._last) * self.rate, self.burst)
        self._last = now
        return self.level

    def spend(self, units: float) -> None:
        self.level -= units

    def wait(self, units: float = 1.0) -> float:
        """Seconds until ``units`` are there."""
        return max(units - self.available(), 0.0) / self.rate
