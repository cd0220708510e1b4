"""Rate-limited logging for input we do not control (unknown channels, odd requests): one
line per key per interval, with a count of what was left unsaid."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogLimiter:
    """Say yes at most once per ``interval`` per key, and count what it swallowed.

    Keys come from the outside world (channel suffixes), so the table is bounded:
    past ``max_keys`` entries, the ones whose window has ended are forgotten. And all
    keys together get at most ``max_per_interval`` yeses per interval: a flood of
    distinct keys is counted (:meth:`overflow`) and summed up by the caller, not logged
    line by line.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        max_keys: int = 1024,
        max_per_interval: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self.max_per_interval = max_per_interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._window = float("-inf")  # when the current global window started
        self._said = 0  # yeses in it
        self._overflow = 0  # swallowed by the global cap, not yet summed up

    def allow(self, key: str) -> int | None:
        """Return None to stay quiet, else how many were suppressed since the last yes."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if now - self._window >= self.interval:
            self._window, self._said = now, 0
        if self._said >= self.max_per_interval:
            self._overflow += 1
            return None
        self._said += 1
        if last is None and len(self._last) >= self.max_keys:
            self._forget_before(now - self.interval)
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def overflow(self) -> int:
        """How many were swallowed by the global cap since the last call that returned
        non-zero; returns 0 until the window they fell in has ended, so that the caller
        sums them up at most once per interval."""
        if not self._overflow or self._clock() - self._window < self.interval:
            return 0
        count, self._overflow = self._overflow, 0
        return count

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, t in self._last.items() if t < cutoff]:
            del self._last[key]
            self._suppressed.pop(key, None)
        if len(self._last) >= self.max_keys:  # all recent: drop the oldest half
            for key in sorted(self._last, key=self._last.__getitem__)[: self.max_keys // 2]:
                del self._last[key]
                self._suppressed.pop(key, None)
