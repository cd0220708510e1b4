"""What one kept log line is, in full: its frame, when it came, what it invalidated.

Pure (no I/O, no widgets): the details screen, ``y`` (copy) and ``s`` (save) read it.
A line keeps the frame it came in, as received (or its place in a batch's frame), not
the parsed message: a frame costs its length, and is parsed again only when opened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from bbb_tui.cache import key_label
from bbb_tui.monitor import KEEP_FRAME, UNKNOWN, Entry, InBatch, NotKept, Source, clock_time
from bbb_tui.recording import record_line
from bridge.core.protocol import (
    Batch,
    Event,
    EventType,
    Malformed,
    Message,
    Unknown,
    invalidated_keys,
    parse_frame,
)
from bridge.core.sanitize import sanitize

_COMPACT = (",", ":")
_MESSAGES = {*(t.value for t in EventType), UNKNOWN}  # kinds of line a message gave
#: What parsing a frame again can raise: it parsed when it came, higher in the stack.
_UNREADABLE = (ValueError, RecursionError, IndexError, TypeError, KeyError)
TOO_DEEP = "nested too deep to parse again here (it was read when it came)"


def _text(frame: str | bytes) -> str:
    """A frame as text, as the parser reads it (bad UTF-8 replaced)."""
    return frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame


def _item(source: InBatch) -> object:
    """The JSON value of one message of a batch (raises if it cannot be parsed again)."""
    return json.loads(_text(source.frame))[source.position]


def frame_of(source: Source) -> str | None:
    """The frame a line came in, for a recording: as received; a batch's message as a batch
    of one (so a replay reads it as the live client did, inside a batch). None for the
    monitor's own lines, a frame too big to keep, or a batch too deep to parse again here."""
    if isinstance(source, str | bytes):
        return _text(source)
    if isinstance(source, InBatch):
        try:
            return json.dumps([_item(source)])
        except _UNREADABLE:
            return None
    return None


def message_text(source: Source) -> str | None:
    """The message alone, for reading and copying: the frame, or its batch item."""
    if isinstance(source, InBatch):
        try:
            return json.dumps(_item(source), separators=_COMPACT)
        except _UNREADABLE:
            return None
    return frame_of(source)


def message_of(source: Source) -> Message | NotKept | None:
    """The message a line shows, parsed again from its frame."""
    if isinstance(source, NotKept) or source is None:
        return source
    if isinstance(source, InBatch):
        batch = parse_frame(source.frame)
        if isinstance(batch, Batch) and source.position < len(batch.messages):
            return batch.messages[source.position]
        return Malformed(TOO_DEEP, "")
    return parse_frame(source)


def copied_text(source: Source) -> str | None:
    """What ``y`` puts on the clipboard: the message in ASCII (JSON escapes for anything
    else; visible escapes in a frame that is not JSON): pasted into a shell, nothing acts."""
    text = message_text(source)
    if text is None or (text.isascii() and text.isprintable()):
        return text
    try:
        return json.dumps(json.loads(text), separators=_COMPACT)
    except _UNREADABLE:
        return sanitize(text).encode("ascii", "backslashreplace").decode("ascii")


def pretty_frame(source: Source) -> str | None:
    """The message indented, for reading (non-ASCII as is: the screen sanitizes it)."""
    text = message_text(source)
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except _UNREADABLE:
        return text


def arrival(wall: float) -> str:
    """``2026-12-02 04:31:07.125`` local time."""
    return f"{time.strftime('%Y-%m-%d', time.localtime(wall))} {clock_time(wall)}"


def describe(entry: Entry) -> list[tuple[str, str]]:
    """(label, value) pairs about ``entry``, for people; values are not sanitized yet."""
    kind, line, source, wall = entry
    facts = [("kind", kind), ("arrived", arrival(wall))]
    message = message_of(source)
    if isinstance(message, NotKept):
        facts.append(("frame", f"not kept: {message.size:,} long (more than {KEEP_FRAME:,})"))
    elif isinstance(message, Event):
        facts.append(("seq", "-" if message.seq is None else f"{message.seq:,}"))
        keys = invalidated_keys(message.type, message.id)
        invalidated = ", ".join(f"[{key_label(key)}]" for key in keys)
        facts.append(("invalidated", invalidated or "nothing (no query uses this type)"))
    elif isinstance(message, Malformed) and kind in _MESSAGES:  # read when it came, not now
        facts.append(("frame", TOO_DEEP))
    elif isinstance(message, Malformed):
        facts.append(("why", message.reason))
        facts.append(("invalidated", "nothing (not a message)"))
    elif isinstance(message, Unknown):
        facts.append(("invalidated", "nothing (a type this client does not know)"))
    else:
        facts.append(("said", line.split("  ", 2)[-1].strip()))
    return facts


def saved_lines(entries: Iterable[Entry]) -> list[str]:
    """``entries`` as a recording (JSON Lines, as ``--record`` writes: ``--replay`` reads
    it back); the monitor's own lines are not frames, and are left out."""
    frames = ((wall, frame_of(source)) for _, _, source, wall in entries)
    return [record_line(wall, frame) for wall, frame in frames if frame is not None]
