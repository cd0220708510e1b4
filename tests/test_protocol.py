"""The pure wire contract: channel names, frames, client parsing, query keys."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import protocol
from bridge.core.protocol import (
    DATA_FIELD,
    GREETING,
    Batch,
    Change,
    Event,
    EventType,
    Greeting,
    Malformed,
    Message,
    ResumePoint,
    ResumeTracker,
    Resync,
    Unknown,
    channel_table,
    decode_payload,
    encode_event,
    invalidated_keys,
    parse_frame,
    subscription_pattern,
)

# PROTOCOL.md section 2, spelled out independently of the module under test.
CONTRACT = {
    "job-refresh": "jobId",
    "queue-refresh": "queueName",
    "job-scheduler-refresh": "schedulerKey",
    "log-refresh": "jobId",
    "single-job-refresh": "jobId",
    "single-queue-refresh": "queueName",
    "single-job-scheduler-refresh": "schedulerKey",
    "job-log-refresh": "jobId",
}


def test_the_eight_types_and_fields_match_the_contract() -> None:
    """Exactly the eight documented types exist, each with its documented data field."""
    assert {t.value: DATA_FIELD[t] for t in EventType} == CONTRACT


@pytest.mark.parametrize("type_name,field", sorted(CONTRACT.items()))
def test_encode_event_has_the_documented_shape(type_name: str, field: str) -> None:
    """A frame is {"type": T, "data": {FIELD: payload}} and nothing else."""
    frame = encode_event(EventType(type_name), "test-id-1")
    assert json.loads(frame) == {"type": type_name, "data": {field: "test-id-1"}}


def test_greeting_is_the_original_one() -> None:
    """The greeting is the original server's, byte for byte in meaning."""
    assert json.loads(GREETING) == {"type": "job-refresh", "data": {"id": "connected"}}
    assert isinstance(parse_frame(GREETING), Greeting)


def test_channel_table_maps_each_channel_under_the_prefix() -> None:
    """Each type's channel is prefix + type."""
    table = channel_table("bbb:ingest:events:")
    assert table[b"bbb:ingest:events:job-refresh"] is EventType.JOB_REFRESH
    assert table[b"bbb:ingest:events:job-log-refresh"] is EventType.JOB_LOG_REFRESH
    assert len(table) == 8


def test_subscription_pattern_escapes_glob_characters() -> None:
    """A prefix with glob characters matches only itself."""
    assert subscription_pattern("bbb:ingest:events:") == "bbb:ingest:events:*"
    assert subscription_pattern("a*b?[c]\\:") == "a\\*b\\?\\[c\\]\\\\:*"


def test_decode_payload_replaces_invalid_utf8() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of failing."""
    assert decode_payload(b"ok-\xff\xfe") == "ok-\ufffd\ufffd"
    assert decode_payload(b"") == ""


@given(st.sampled_from(list(EventType)), st.binary(max_size=512))
def test_any_payload_encodes_to_valid_json_that_round_trips(
    event_type: EventType, payload: bytes
) -> None:
    """Whatever the Redis payload, the frame is valid JSON of the right shape, and parses back."""
    frame = encode_event(event_type, decode_payload(payload))
    frame.decode("utf-8")  # always valid UTF-8
    message = json.loads(frame)
    assert message == {
        "type": event_type.value,
        "data": {DATA_FIELD[event_type]: decode_payload(payload)},
    }
    assert parse_frame(frame) == Event(event_type, decode_payload(payload), message["data"])


@pytest.mark.parametrize(
    "frame,reason",
    [
        ("not json", "not JSON"),
        ("1", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('{"data": {}}', "no string 'type'"),
        ('{"type": "job-refresh"}', "no object 'data'"),
        ('{"type": "job-refresh", "data": null}', "no object 'data'"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_parse_frame_classifies_malformed_frames(frame: str, reason: str) -> None:
    """Frames that are not messages are reported with a reason, never raised."""
    parsed = parse_frame(frame)
    assert isinstance(parsed, Malformed)
    assert parsed.reason == reason


def test_a_batch_frame_is_its_messages_each_parsed_alone() -> None:
    """A JSON array (a ?batch= frame) gives a Batch of its messages, a bad one marked as such."""
    frame = '[{"type":"job-refresh","data":{"jobId":"7"},"seq":3},[1],{"type":"resync","data":{}}]'
    parsed = parse_frame(frame)
    assert isinstance(parsed, Batch)
    event, nested, resync = parsed.messages
    assert event == Event(EventType.JOB_REFRESH, "7", {"jobId": "7"}, 3)
    assert nested == Malformed("not a JSON object", "[1]")
    assert isinstance(resync, Resync)


def test_parse_frame_keeps_unknown_types() -> None:
    """A new type (an extension) is recognised as unknown, not as an error."""
    parsed = parse_frame('{"type": "session", "data": {"seq": 3}}')
    assert isinstance(parsed, Unknown)
    assert parsed == Unknown("session", {"seq": 3})


@given(
    st.sampled_from([t.value for t in EventType] + ["job-refreshx", "other"]),
    st.sampled_from(["jobId", "queueName", "schedulerKey", "id"]),
    st.text(max_size=40),
    st.sampled_from(
        [
            *("", " ", "}", ',"seq":1', ',"seq":0', ',"seq":007', ',"seq":-1', ',"seq":1e3'),
            *(',"seq":' + "9" * 18, ',"seq":' + "9" * 19, ',"seq":true'),
        ]
    ),
)
def test_fast_path_agrees_with_json_parsing(kind: str, name: str, value: str, tail: str) -> None:
    """The fast path for the bridge's own frame shape gives what full JSON parsing gives."""
    text = f'{{"type":"{kind}","data":{{"{name}":"{value}"}}{tail}}}'
    fast = parse_frame(text)
    slow = protocol._parse_json(text)
    assert (type(fast), fast) == (type(slow), slow)


def test_parse_frame_reads_generic_id_when_the_field_is_missing() -> None:
    """data.id is accepted as the event id when the type's own field is absent."""
    parsed = parse_frame('{"type": "single-job-refresh", "data": {"id": "42"}}')
    assert parsed == Event(EventType.SINGLE_JOB_REFRESH, "42", {"id": "42"})


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parse_frame_never_raises(frame: str | bytes) -> None:
    """Any text or bytes at all is classified without an exception."""
    assert isinstance(parse_frame(frame), Message)


def test_invalidated_keys_follow_section_3() -> None:
    """Each type invalidates exactly the query keys of PROTOCOL.md section 3."""
    expected = {
        "job-refresh": [("jobs/table",), ("jobs/stats",)],
        "queue-refresh": [("queues/table",), ("queues/stats",)],
        "job-scheduler-refresh": [("queues/table",), ("queues/stats",)],
        "log-refresh": [("jobs/table",), ("jobs/stats",)],
        "single-job-refresh": [("jobs/single", "42")],
        "job-log-refresh": [("jobs/logs", "42")],
        "single-queue-refresh": [],
        "single-job-scheduler-refresh": [],
    }
    assert {t.value: list(invalidated_keys(t, "42")) for t in EventType} == expected


def test_seed_events_are_the_originals() -> None:
    """The four test events are those of the original's script."""
    assert [(t.value, p) for t, p in protocol.SEED_EVENTS] == [
        ("job-refresh", "test-job-123"),
        ("queue-refresh", "test-queue"),
        ("job-scheduler-refresh", "test-scheduler-key"),
        ("log-refresh", "test-job-456"),
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(EventType)),
            st.binary(max_size=300),
            st.one_of(st.none(), st.text(max_size=20)),
        ),
        max_size=20,
    ),
    st.integers(min_value=0, max_value=10**17),
)
def test_numbered_batches_match_one_by_one_encoding(
    raw: list[tuple[EventType, bytes, str | None]], last_seq: int
) -> None:
    """The batch encoder numbers from last_seq + 1 and frames each event like the general one;
    a client reads back the same type, id, extra fields and seq."""
    from bridge.core.protocol import encode_numbered_events

    events: list[Change] = [
        (
            t,
            p,
            None,
            b"" if q is None else b',"streamId":%s,"event":"added"' % json.dumps(q).encode(),
        )
        for t, p, q in raw
    ]
    frames = encode_numbered_events(events, last_seq)
    assert frames == [
        encode_event(t, decode_payload(p), last_seq + n, extra)
        for n, (t, p, _, extra) in enumerate(events, 1)
    ]
    for n, ((event_type, payload, queue), frame) in enumerate(zip(raw, frames, strict=True), 1):
        data = {DATA_FIELD[event_type]: decode_payload(payload)}
        if queue is not None:
            data |= {"streamId": queue, "event": "added"}
        message = parse_frame(frame)
        assert message == Event(event_type, decode_payload(payload), data, last_seq + n)


TRACKED: list[tuple[str, list[str], tuple[int, str] | None]] = [
    ("nothing yet", [], None),
    ("a greeting alone", ['{"type":"job-refresh","data":{"id":"connected"}}'], None),
    ("a session", ['{"type":"session","data":{"epoch":"e1","seq":4}}'], (4, "e1")),
    (
        "events after it",
        [
            '{"type":"session","data":{"epoch":"e1","seq":4}}',
            '{"type":"job-refresh","data":{"jobId":"a"},"seq":5}',
            '{"type":"job-refresh","data":{"jobId":"b"},"seq":6}',
        ],
        (6, "e1"),
    ),
    (
        "a batch: its last event",
        [
            '{"type":"session","data":{"epoch":"e1","seq":4}}',
            '[{"type":"job-refresh","data":{"jobId":"a"},"seq":5},'
            '{"type":"resync","data":{"reason":"slow-client"}},'
            '{"type":"job-refresh","data":{"jobId":"b"},"seq":7}]',
        ],
        (7, "e1"),
    ),
    (
        "a new bridge run",
        [
            '{"type":"session","data":{"epoch":"e1","seq":4}}',
            '{"type":"job-refresh","data":{"jobId":"a"},"seq":5}',
            '{"type":"session","data":{"epoch":"e2","seq":0}}',
        ],
        (0, "e2"),
    ),
    (
        "events without seq (the original server)",
        ['{"type":"job-refresh","data":{"jobId":"a"}}'],
        None,
    ),
]


@pytest.mark.parametrize(
    "frames,point", [(f, p) for _, f, p in TRACKED], ids=[c for c, _, _ in TRACKED]
)
def test_the_resume_point_follows_sessions_events_and_batches(
    frames: list[str], point: tuple[int, str] | None
) -> None:
    """After these frames, a client resumes from this point (or from nothing)."""
    tracker = ResumeTracker()
    for frame in frames:
        tracker.observe(parse_frame(frame))
    assert tracker.point == (None if point is None else ResumePoint(*point))
