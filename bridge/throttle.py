"""Rate-limited logging for input we do not control (unknown channels, odd payloads)."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """Say yes at most once per ``interval`` per key, and count what it swallowed.

    Keys come from the outside world (channel suffixes), so the table is bounded:
    past ``max_keys`` entries, the ones whose window has ended are forgotten.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """Return None to stay quiet, else how many were suppressed since the last yes."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            self._forget_before(now - self.interval)
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, t in self._last.items() if t < cutoff]:
            del self._last[key]
            self._suppressed.pop(key, None)
        if len(self._last) >= self.max_keys:  # all recent: drop the oldest half
            for key in sorted(self._last, key=self._last.__getitem__)[: self.max_keys // 2]:
                del self._last[key]
                self._suppressed.pop(key, None)
