"""How a group of clients gets its messages on the wire: plain, batched, compressed (pure).

Both are opt-in per client, and both keep "encode once": clients are grouped by what
they want and how, and each group's bytes are built once and written to all of them.

- ``?batch=<ms>``: events are held for up to ``ms`` milliseconds and sent as one JSON
  array frame, ``[{"type":...,"seq":1},{"type":...,"seq":2}]``. Fewer frames, more latency.
- permessage-deflate, when the bridge runs with ``--compression`` and the client offers
  it (browsers do): each message is compressed on its own (``server_no_context_takeover``,
  negotiated by websockets), so the same compressed bytes serve every such client.
  Small single events barely shrink; batches shrink a lot (see the README's figures).
"""

from __future__ import annotations

import zlib

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import Protocol

from bridge.core.subscriptions import Delivery
from bridge.wsio.frames import text_frame, text_frames

_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_DEFLATE_HEAD = 0xC1  # FIN + RSV1 (compressed) + text


def negotiated_deflate(protocol: Protocol) -> int:
    """The window bits a client accepted for our messages, or 0 if it did not negotiate."""
    for extension in protocol.extensions:
        if isinstance(extension, PerMessageDeflate) and extension.local_no_context_takeover:
            return extension.local_max_window_bits or 15
    return 0


def encode(frames: list[bytes], delivery: Delivery) -> bytes:
    """The bytes for ``frames`` (UTF-8 JSON messages) as ``delivery`` says: one write."""
    if delivery.batch:
        frames = [b"[" + b",".join(frames) + b"]"]
    if not delivery.deflate:
        return text_frames(frames)
    return b"".join(deflate_frame(f, delivery.deflate) for f in frames)


def deflate_frame(payload: bytes, window_bits: int = 15) -> bytes:
    """One final text frame, compressed on its own (RFC 7692, no context takeover)."""
    compressor = zlib.compressobj(wbits=-window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    if data.endswith(_DEFLATE_TAIL):
        data = data[:-4]
    frame = bytearray(text_frame(data))
    frame[0] = _DEFLATE_HEAD
    return bytes(frame)
