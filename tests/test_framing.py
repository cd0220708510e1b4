"""The frame splitter against websockets' own parser, over arbitrary chunkings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from bridge.wsframes import split_frames, text_frame, text_frames

MAX = 1 << 20


def server_frame(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    """Serialize a frame as a server sends it (unmasked)."""
    return Frame(opcode, payload, fin).serialize(mask=False)


def messages_via_splitter(chunks: list[bytes]) -> list[bytes]:
    """Feed chunks through split_frames, sending non-fast frames to a real protocol."""
    protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=MAX)
    pending, out = b"", []
    for chunk in chunks:
        pending += chunk
        frames, used = split_frames(pending, MAX)
        pending = pending[used:]
        for fast, data in frames:
            if fast:
                out.append(data)
            else:
                protocol.receive_data(data)
                out.extend(
                    bytes(e.data) for e in protocol.events_received() if e.opcode is Opcode.TEXT
                )
    assert pending == b""
    return out


frame_strategy = st.one_of(
    st.binary(max_size=300).map(lambda p: (Opcode.TEXT, p)),
    st.binary(max_size=70_000).map(lambda p: (Opcode.TEXT, p)),
    st.binary(max_size=100).map(lambda p: (Opcode.PING, p)),
    st.binary(max_size=100).map(lambda p: (Opcode.BINARY, p)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(frame_strategy, max_size=8), st.lists(st.integers(1, 5000), max_size=20))
def test_any_chunking_yields_every_text_payload_in_order(
    frames: list[tuple[Opcode, bytes]], cuts: list[int]
) -> None:
    """However the stream is cut into reads, every text frame comes out once, in order."""
    stream = b"".join(server_frame(op, p) for op, p in frames)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(stream[pos : pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    expected = [p for op, p in frames if op is Opcode.TEXT]
    assert messages_via_splitter(chunks) == expected


def test_control_and_odd_frames_go_to_the_protocol() -> None:
    """Pings, binary, fragments and masked frames are returned whole, not as fast payloads."""
    raw = [
        server_frame(Opcode.PING, b"x"),
        server_frame(Opcode.BINARY, b"b"),
        server_frame(Opcode.TEXT, b"part", fin=False),
        Frame(Opcode.TEXT, b"masked").serialize(mask=True),
    ]
    frames, used = split_frames(b"".join(raw), MAX)
    assert used == sum(map(len, raw))
    assert frames == [(False, r) for r in raw]


def test_incomplete_frame_stays_in_the_buffer() -> None:
    """A frame cut short is not consumed; the complete ones before it are."""
    whole = server_frame(Opcode.TEXT, b"a" * 200)
    frames, used = split_frames(whole + whole[:-1], MAX)
    assert frames == [(True, b"a" * 200)]
    assert used == len(whole)


def test_oversized_frame_is_handed_on_at_its_header() -> None:
    """A frame above the size limit goes to the protocol at once (which closes with 1009)."""
    big = server_frame(Opcode.TEXT, b"z" * 2000)
    frames, used = split_frames(big[:10], 1000)
    assert frames == [(False, big[:10])]
    assert used == 10


@given(st.lists(st.binary(max_size=70_000), max_size=6))
@settings(max_examples=40, deadline=None)
def test_text_frames_are_what_websockets_would_send(payloads: list[bytes]) -> None:
    """The hand-built frames are byte for byte the library's own unmasked text frames."""
    assert text_frames(payloads) == b"".join(server_frame(Opcode.TEXT, p) for p in payloads)
    for payload in payloads:
        assert text_frame(payload) == server_frame(Opcode.TEXT, payload)


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
    from bridge.connection import keep_alive

    protocol = Protocol(Side.SERVER, state=State.OPEN)
    transport = RecordingTransport()
    assert keep_alive(protocol, transport, idle=5, interval=20)  # type: ignore[arg-type]
    assert transport.written == []
    assert keep_alive(protocol, transport, idle=21, interval=20)  # type: ignore[arg-type]
    assert transport.written == [server_frame(Opcode.PING, b"")]
    assert not keep_alive(protocol, transport, idle=41, interval=20)  # type: ignore[arg-type]
    assert transport.aborted
