"""Hypothesis strategies for hostile input: raw WebSocket frames and odd Redis payloads."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from bridge.core.protocol import EventType

TYPES = [t.value for t in EventType] + ["resync", "session", "other", ""]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)

# Messages that look like the protocol, with every field possibly the wrong type.
message_texts = st.one_of(
    st.builds(
        lambda kind, data, seq: json.dumps({"type": kind, "data": data, "seq": seq}),
        st.sampled_from(TYPES) | st.text(max_size=10),
        json_values,
        json_values,
    ),
    st.builds(json.dumps, json_values),
    st.text(max_size=200),  # broken JSON, or none at all
    st.just('{"type":"job-refresh","data":{"jobId":"x"'),
    # Deeply nested JSON, built in a function so that the strategy's repr stays short.
    st.builds(lambda opener, depth: opener * depth, st.sampled_from(["[", '{"a":']), st.just(5000)),
)

payloads = st.one_of(
    message_texts.map(str.encode),
    st.binary(max_size=300),
    st.sampled_from([b"\xff\xfe\xfd", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00" * 64]),  # bad UTF-8
)


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    declared: int | None = None,
) -> bytes:
    """One frame, as bytes; ``declared`` lies about the payload's length."""
    length = len(payload) if declared is None else declared
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 65536:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def frames(*, masked: bool) -> st.SearchStrategy[bytes]:
    """Mostly well-formed frames (masked as a client's must be, or not as a server's),
    with hostile ones mixed in: wrong opcodes, RSV bits, the other masking, fragments,
    lengths that lie (up to 2**63 - 1), and plain garbage."""
    proper_mask = st.binary(min_size=4, max_size=4) if masked else st.none()
    wrong_mask = st.none() if masked else st.binary(min_size=4, max_size=4)
    return st.one_of(
        st.builds(
            ws_frame,
            st.sampled_from([1, 1, 1, 2, 9, 10]),
            payloads,
            mask=proper_mask,
        ),
        st.builds(
            ws_frame,
            st.integers(min_value=0, max_value=15),
            payloads,
            fin=st.booleans(),
            rsv=st.integers(min_value=0, max_value=7),
            mask=proper_mask | wrong_mask,
            declared=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
        ),
        st.builds(ws_frame, st.just(1), st.just(b"y" * 70_000), mask=proper_mask),  # too big
        st.binary(min_size=1, max_size=40),  # not a frame at all
    )
