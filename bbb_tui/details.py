"""What one kept log line is, in full: its frame as JSON, when it came, what it invalidated.

Pure (no I/O, no widgets): the details screen, ``y`` (copy) and ``s`` (save) read it.
The frame is re-encoded from the parsed message (the log keeps messages, not the bytes
they came in), with its fields in their order: for an event, the frame a bridge sends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from bbb_tui.cache import key_label
from bbb_tui.monitor import KEEP_FRAME, Entry, NotKept, clock_time
from bbb_tui.recording import record_line
from bridge.core.protocol import Event, Malformed, Message, Unknown, invalidated_keys
from bridge.core.sanitize import sanitize


def frame_of(message: Message | NotKept | None) -> str | None:
    """The JSON frame that carried ``message``, compact and ASCII (control characters
    and non-ASCII escaped: safe for a clipboard or a file); the raw text (as received, cut
    to 200 characters) for a frame that was not a message; None for the monitor's own
    lines, a frame too big to keep, or data nested too deep to encode again."""
    try:
        if isinstance(message, Event):
            frame: dict[str, object] = {"type": message.type.value, "data": message.data}
            if message.seq is not None:
                frame["seq"] = message.seq
            return json.dumps(frame, separators=(",", ":"))
        if isinstance(message, Unknown):
            return json.dumps({"type": message.type, "data": message.data}, separators=(",", ":"))
    except (RecursionError, ValueError):  # parsed at the edge of the stack; deeper here
        return None
    if isinstance(message, Malformed):
        return message.raw
    return None


def copied_text(message: Message | NotKept | None) -> str | None:
    """What ``y`` puts on the clipboard: the frame, with a malformed one's controls made
    visible (pasted into a shell, a raw escape would act)."""
    frame = frame_of(message)
    if frame is not None and isinstance(message, Malformed):
        return sanitize(frame)
    return frame


def arrival(wall: float) -> str:
    """``2026-12-02 04:31:07.125`` local time."""
    return f"{time.strftime('%Y-%m-%d', time.localtime(wall))} {clock_time(wall)}"


def describe(entry: Entry) -> list[tuple[str, str]]:
    """(label, value) pairs about ``entry``, for people; values are not sanitized yet."""
    kind, line, message, wall = entry
    facts = [("kind", kind), ("arrived", arrival(wall))]
    if isinstance(message, NotKept):
        facts.append(("frame", f"not kept: {message.size:,} bytes (more than {KEEP_FRAME:,})"))
    elif isinstance(message, Event):
        facts.append(("seq", "-" if message.seq is None else f"{message.seq:,}"))
        keys = invalidated_keys(message.type, message.id)
        invalidated = ", ".join(f"[{key_label(key)}]" for key in keys)
        facts.append(("invalidated", invalidated or "nothing (no query uses this type)"))
    elif isinstance(message, Malformed):
        facts.append(("why", f"{message.reason} (its first 200 characters are kept)"))
        facts.append(("invalidated", "nothing (not a message)"))
    elif isinstance(message, Unknown):
        facts.append(("invalidated", "nothing (a type this client does not know)"))
    else:
        facts.append(("said", line.split("  ", 2)[-1].strip()))
    return facts


def pretty_frame(message: Message | NotKept | None) -> str | None:
    """The frame indented, for reading (non-ASCII as is: the screen sanitizes it)."""
    if isinstance(message, Malformed):
        return message.raw
    frame = frame_of(message)
    if frame is None:
        return None
    try:
        return json.dumps(json.loads(frame), indent=2, ensure_ascii=False)
    except (RecursionError, ValueError):
        return frame


def saved_lines(entries: Iterable[Entry]) -> list[str]:
    """``entries`` as a recording (JSON Lines, as ``--record`` writes: ``--replay`` reads
    it back); the monitor's own lines are not frames, and are left out."""
    frames = ((wall, frame_of(message)) for _, _, message, wall in entries)
    return [record_line(wall, frame) for wall, frame in frames if frame is not None]
