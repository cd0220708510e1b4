"""The frame splitter against websockets' own parser, over arbitrary chunkings."""

from __future__ import annotations

import asyncio
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.utils import accept_key

from bbb_tui.wire import WireConnection
from bridge.wsio.frames import FrameSplitter, text_frame, text_frames
from tests.hostile import ws_frame

MAX = 1 << 20


class FakeTransport(asyncio.Transport):
    """Just enough of an asyncio.Transport for a WireConnection fed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def handshake_response(request: bytes) -> bytes:
    key = re.search(rb"Sec-WebSocket-Key: (\S+)", request)
    assert key is not None
    accept = accept_key(key.group(1).decode()).encode()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


async def messages_via_wire(chunks: list[bytes]) -> list[str | bytes]:
    """What the TUI's own connection hands on, fed the stream in these reads."""
    out: list[str | bytes] = []
    connection = WireConnection("ws://bridge/", out.extend, max_size=MAX)
    transport = FakeTransport()
    connection.connection_made(transport)
    connection.data_received(handshake_response(transport.written))
    for chunk in chunks:
        connection.data_received(chunk)
    return out


def messages_via_websockets(stream: bytes) -> list[str | bytes]:
    """What websockets' own protocol makes of the same stream, up to a protocol error:
    text messages as text, binary ones as bytes."""
    protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=MAX)
    protocol.receive_data(stream)
    out: list[str | bytes] = []
    parts: list[tuple[Opcode, bytes]] = []
    for event in protocol.events_received():
        assert isinstance(event, Frame)
        if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append((event.opcode, bytes(event.data)))
            if event.fin:
                data = b"".join(p for _, p in parts)
                out.append(data.decode(errors="replace") if parts[0][0] is Opcode.TEXT else data)
                parts = []
    return out


def fragmented(parts: list[bytes], extra: list[tuple[Opcode, bytes, bool]]) -> list[Frame3]:
    """A text message in fragments, with ``extra`` frames after the first one."""
    frames = [
        (Opcode.TEXT if n == 0 else Opcode.CONT, part, n == len(parts) - 1)
        for n, part in enumerate(parts)
    ]
    return frames[:1] + extra + frames[1:]


Frame3 = tuple[Opcode, bytes, bool]
# A message: a final text frame, a binary one, a ping, or a text message in fragments
# (with, now and then, a ping between them, or a stray final text frame: a protocol error).
message_strategy = st.one_of(
    st.text(max_size=300).map(lambda t: [(Opcode.TEXT, t.encode(), True)]),
    st.binary(max_size=70_000).map(lambda p: [(Opcode.TEXT, p, True)]),
    st.binary(max_size=100).map(lambda p: [(Opcode.PING, p, True)]),
    st.binary(max_size=100).map(lambda p: [(Opcode.BINARY, p, True)]),
    st.builds(
        fragmented,
        st.lists(st.text(max_size=50).map(str.encode), min_size=2, max_size=4),
        st.sampled_from([[], [(Opcode.PING, b"p", True)], [(Opcode.TEXT, b"stray", True)]]),
    ),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(message_strategy, max_size=8), st.lists(st.integers(1, 5000), max_size=20))
async def test_any_chunking_yields_what_websockets_reads(
    messages: list[list[Frame3]], cuts: list[int]
) -> None:
    """However the stream is cut into reads, the TUI's connection hands on exactly the
    messages websockets' own protocol reads, in order: fragments assembled, and nothing
    after a protocol error (a final text frame inside a fragmented message)."""
    frames = [frame for message in messages for frame in message]
    stream = b"".join(ws_frame(op, payload, fin=fin) for op, payload, fin in frames)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(stream[pos : pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    assert await messages_via_wire(chunks) == messages_via_websockets(stream)


def test_control_and_odd_frames_go_to_the_protocol() -> None:
    """Pings, binary, fragments and masked frames are returned whole, not as fast payloads."""
    raw = [
        ws_frame(Opcode.PING, b"x"),
        ws_frame(Opcode.BINARY, b"b"),
        ws_frame(Opcode.TEXT, b"part", fin=False),
        Frame(Opcode.TEXT, b"masked").serialize(mask=True),
    ]
    frames, used = FrameSplitter(MAX).split(b"".join(raw))
    assert used == sum(map(len, raw))
    assert frames == [(False, r) for r in raw]


def test_incomplete_frame_stays_in_the_buffer() -> None:
    """A frame cut short is not consumed; the complete ones before it are."""
    whole = ws_frame(Opcode.TEXT, b"a" * 200)
    frames, used = FrameSplitter(MAX).split(whole + whole[:-1])
    assert frames == [(True, b"a" * 200)]
    assert used == len(whole)


def test_oversized_frame_is_handed_on_at_its_header() -> None:
    """A frame above the size limit goes to the protocol at once (which closes with 1009)."""
    big = ws_frame(Opcode.TEXT, b"z" * 2000)
    frames, used = FrameSplitter(1000).split(big[:10])
    assert frames == [(False, big[:10])]
    assert used == 10


@given(st.lists(st.binary(max_size=70_000), max_size=6))
@settings(max_examples=40, deadline=None)
def test_text_frames_are_what_websockets_would_send(payloads: list[bytes]) -> None:
    """The hand-built frames are byte for byte the library's own unmasked text frames."""
    assert text_frames(payloads) == b"".join(
        Frame(Opcode.TEXT, p).serialize(mask=False) for p in payloads
    )
    for payload in payloads:
        assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


class RecordingTransport:
    """Just enough of an asyncio.Transport to see what keep_alive writes or aborts."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self.aborted = True


def test_keep_alive_pings_the_quiet_and_drops_the_silent() -> None:
    """Quiet for an interval: one ping; quiet for two: the connection is aborted."""
    from bridge.wsio.plumbing import keep_alive

    protocol = Protocol(Side.SERVER, state=State.OPEN)
    transport = RecordingTransport()
    assert keep_alive(protocol, transport, idle=5, interval=20)  # type: ignore[arg-type]
    assert transport.written == []
    assert keep_alive(protocol, transport, idle=21, interval=20)  # type: ignore[arg-type]
    assert transport.written == [ws_frame(Opcode.PING, b"")]
    assert not keep_alive(protocol, transport, idle=41, interval=20)  # type: ignore[arg-type]
    assert transport.aborted
