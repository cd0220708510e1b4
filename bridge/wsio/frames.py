"""Server-to-client WebSocket frames, built and split by hand for speed (pure; RFC 6455 5.2).

Both directions handle only the common case and leave everything else to websockets:

- :func:`text_frames` frames a batch of messages once, as one bytes object that the
  bridge writes to every client: server frames are unmasked and uncompressed here, so
  the same bytes serve all of them (the library would frame each message per client).
- :class:`FrameSplitter` is the TUI's reader. The common frame, a final unmasked text
  frame, is returned as its payload. Every other frame (ping, close, binary, fragments,
  64-bit lengths, anything odd or oversized) is returned whole, for websockets' protocol
  object to handle: it keeps the connection state, answers pings and closes, and fails
  the connection properly on a protocol error. This split exists for speed: parsing
  each frame through the library's generators costs ~9 us on our machines, this ~1 us.
"""

from __future__ import annotations

FAST_HEAD = 0x81  # FIN + text opcode, no RSV bits
_FAST_HEAD = bytes((FAST_HEAD,))


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (already UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((FAST_HEAD, n)) + payload
    if n < 65536:
        return bytes((FAST_HEAD, 126)) + n.to_bytes(2, "big") + payload
    return bytes((FAST_HEAD, 127)) + n.to_bytes(8, "big") + payload


def text_frames(payloads: list[bytes]) -> bytes:
    """Frame each payload as a text frame and join them: one write for a whole batch."""
    head = FAST_HEAD
    return b"".join(
        [bytes((head, len(p))) + p if len(p) < 126 else text_frame(p) for p in payloads]
    )


class FrameSplitter:
    """Splits a server's byte stream into frames, as the TUI reads it (see the module
    docstring); it remembers whether a fragmented message is under way across reads,
    because inside one a final text frame is a protocol error that websockets must see."""

    __slots__ = ("fragmented", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.fragmented = False  # a TEXT/BINARY frame without FIN came, its last CONT not yet

    def split(self, buffer: bytes) -> tuple[list[tuple[bool, bytes]], int]:
        """Return the complete frames at the front of ``buffer`` and how many bytes they use.

        Each item is ``(True, payload)`` for a final unmasked text frame of at most
        ``max_size`` bytes outside a fragmented message, else ``(False, whole_frame_bytes)``.
        An incomplete frame at the end is left in the buffer (not counted in the bytes used).
        """
        frames: list[tuple[bool, bytes]] = []
        pos, end, max_size = 0, len(buffer), self.max_size
        while end - pos >= 2:
            head, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if end - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if second & 0x80:
                start += 4  # a masking key: servers must not mask; the protocol will say so
            if length > max_size:
                # Hand the header on at once: the protocol fails the connection (1009)
                # without our buffering an oversized payload first.
                frames.append((False, buffer[pos:]))
                return frames, end
            stop = start + length
            if stop > end:
                break
            if head == FAST_HEAD and not second & 0x80 and not self.fragmented:
                frames.append((True, buffer[start:stop]))
            else:
                frames.append((False, buffer[pos:stop]))
                opcode, fin = head & 0x0F, head & 0x80
                if opcode in (1, 2) and not fin:
                    self.fragmented = True
                elif opcode == 0 and fin:
                    self.fragmented = False
            pos = stop
        return frames, pos
