"""Recordings: every frame a bridge sent, with when it arrived, as JSON Lines.

``bbb-tui --record FILE`` appends one line per received frame::

    {"t": 1796179637.651, "frame": "{\"type\":\"job-refresh\",\"data\":{\"jobId\":\"7\"}}"}

(``t``: seconds since the epoch; ``frame``: the frame as received, a JSON string, so a
hostile frame stays data: ``jq -r .frame`` gives it back). ``bbb-tui --replay FILE``
plays one back through the same monitor, with no bridge, at its own pace or faster.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import IO

#: A replay sleeps no longer than this between two frames (a night's silence is skipped).
MAX_GAP = 2.0
#: Frames handed to the monitor at once while replaying (as a network read would).
BATCH = 500


def record_line(when: float, frame: str) -> str:
    """One line of a recording: the frame, and when it arrived (seconds since the epoch)."""
    return json.dumps({"t": round(when, 6), "frame": frame}) + "\n"


class Recorder:
    """Appends each batch of frames to ``path``, flushed per batch: a crash loses nothing
    written before it."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._clock = clock
        self.frames = 0

    def write(self, frames: list[str | bytes]) -> None:
        now = self._clock()
        self._file.write(
            "".join(
                record_line(now, f.decode("utf-8", "replace") if isinstance(f, bytes) else f)
                for f in frames
            )
        )
        self._file.flush()
        self.frames += len(frames)

    def close(self) -> None:
        self._file.close()


#: The times a recording may hold: seconds since the epoch, up to the year 5000.
LATEST = 95_617_584_000.0


def is_time(value: object) -> bool:
    """A number of seconds since the epoch a clock can show (not NaN, inf or 1e308)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= LATEST
    )


class BadRecording(ValueError):
    """A line of a recording that is not one (the message says which and why)."""


def read_recording(path: str) -> Iterator[tuple[float, str]]:
    """(arrival time, frame) of each line; raises BadRecording at the first bad one."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                when, frame = entry["t"], entry["frame"]
                if not isinstance(frame, str) or not is_time(when):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise BadRecording(
                    f"{path}, line {number}: not a recording line "
                    '({"t": seconds since 1970, "frame": "..."})'
                ) from None
            yield float(when), frame


async def replay(
    path: str, feed: Callable[[list[str | bytes], float], None], *, speed: float
) -> int:
    """Hand the recording's frames to ``feed``, with when they arrived, at ``speed`` times
    their pace (0: as fast as possible), at most :data:`MAX_GAP` s apart, in batches of
    frames that arrived together; return how many."""
    batch: list[str | bytes] = []
    batch_when = 0.0
    count = 0
    for when, frame in read_recording(path):
        if batch and (when - batch_when > 0.001 or len(batch) >= BATCH):
            feed(batch, batch_when)
            count += len(batch)
            gap = (when - batch_when) / speed if speed else 0.0
            batch = []
            await asyncio.sleep(min(max(gap, 0.0), MAX_GAP))
        if not batch:
            batch_when = when
        batch.append(frame)
    if batch:
        feed(batch, batch_when)
        count += len(batch)
    return count
