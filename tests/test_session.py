"""How a connection is let in and started, without sockets: admission, the opening frames,
and the answers to subscription frames (the pure parts of bridge/serving)."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from bridge.config import Settings
from bridge.core.journal import Journal
from bridge.core.protocol import GREETING, EventType, ResumePoint, ResyncReason, pubsub_change
from bridge.core.subscriptions import EVERYTHING, Subscription
from bridge.serving.admission import Admission, Refused, admit, check_request
from bridge.serving.auth import issue_token
from bridge.serving.session import answer_action, opening_frames

SECRET = "s" * 32


def request(path: str = "/", method: str = "GET", **headers: str | list[str]) -> Request:
    pairs = Headers()
    for name, value in headers.items():
        for one in [value] if isinstance(value, str) else value:
            pairs[name.replace("_", "-")] = one
    return Request(path, pairs, method=method)


def decoded(frames: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in frames]


def unframed(frame: bytes) -> Any:
    """The JSON of one unmasked server text frame."""
    length = frame[1] & 0x7F
    return json.loads(frame[{126: 4, 127: 10}.get(length, 2) :])


# -- admission ------------------------------------------------------------------------


def test_a_plain_upgrade_gets_everything_at_once() -> None:
    assert admit(request(), Settings()) == Admission()


def test_the_query_is_read_once_into_the_admission() -> None:
    """Resume point, filter and batch window come from one parse of the query string."""
    admission = admit(request("/?since=7&epoch=e1&queue=emails&batch=50"), Settings())
    assert admission == Admission(
        point=ResumePoint(7, "e1"),
        subscription=Subscription(only=True, queues=frozenset({b"emails"})),
        batch=0.05,
    )


@pytest.mark.parametrize(
    "path,why",
    [
        ("/?since=x&epoch=e", "since"),
        ("/?types=nope", "nope"),
        ("/?batch=-1", "batch"),
    ],
)
def test_a_bad_query_is_a_400_that_says_why(path: str, why: str) -> None:
    refused = admit(request(path), Settings())
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.BAD_REQUEST
    assert why in refused.why


def test_only_listed_origins_pass_whatever_the_host() -> None:
    """A page from another origin is refused, even one whose Host header matches it (DNS
    rebinding); a client that is no page (no Origin: bbb-tui, tail) is not a browser's."""
    settings = Settings(allowed_origins=frozenset({"https://good.example"}))
    assert isinstance(admit(request(Origin="https://good.example"), settings), Admission)
    refused = admit(request(Origin="http://evil.example:8081", Host="evil.example:8081"), settings)
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.FORBIDDEN
    assert isinstance(admit(request(), settings), Admission)


def test_a_token_is_checked_and_its_expiry_rides_along() -> None:
    settings = Settings(auth_secret=SECRET)
    refused = admit(request(), settings)
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.UNAUTHORIZED
    token = issue_token(SECRET, ttl=60)
    for asked in (request(f"/?token={token}"), request(Authorization=f"Bearer {token}")):
        admission = admit(asked, settings)
        assert isinstance(admission, Admission) and admission.expires_at is not None
        assert time.time() + 50 < admission.expires_at <= time.time() + 61
    refused = admit(request(f"/?token={issue_token('x' * 32)}"), settings)
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.UNAUTHORIZED


def test_what_no_request_may_do() -> None:
    """Other methods are 405, doubled single headers 400, a HEAD upgrade 400."""
    refused = check_request(request(method="DELETE"))
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.METHOD_NOT_ALLOWED
    refused = check_request(request(Origin=["https://a.example", "https://b.example"]))
    assert isinstance(refused, Refused) and refused.status is HTTPStatus.BAD_REQUEST
    assert check_request(request(method="HEAD")) is None
    head = admit(request(method="HEAD"), Settings())
    assert isinstance(head, Refused) and head.status is HTTPStatus.BAD_REQUEST


# -- the opening frames ---------------------------------------------------------------


def journal_with(events: int, size: int = 100) -> Journal:
    journal = Journal(size=size, max_age=60)
    for n in range(events):
        journal.record([pubsub_change(EventType.JOB_REFRESH, f"j{n}".encode())])
    return journal


def test_a_new_client_gets_the_greeting_then_the_session() -> None:
    journal = journal_with(3)
    frames, gap = opening_frames(journal, None, None)
    assert gap is None and frames[0] == GREETING
    assert decoded(frames)[1] == {
        "type": "session",
        "data": {"epoch": journal.epoch, "seq": 3, "redis": "up"},
    }


def test_a_resumable_point_opens_without_a_resync() -> None:
    """The replay itself follows, as the client drains (see Replay)."""
    journal = journal_with(3)
    frames, gap = opening_frames(journal, ResumePoint(1, journal.epoch), None)
    assert gap is None and [m["type"] for m in decoded(frames)] == ["job-refresh", "session"]


@pytest.mark.parametrize(
    "point,reason",
    [
        (ResumePoint(1, "another-run"), ResyncReason.EPOCH_CHANGED),
        (ResumePoint(99, "this-run"), ResyncReason.UNKNOWN_SEQ),
        (ResumePoint(0, "this-run"), ResyncReason.REPLAY_UNAVAILABLE),
    ],
)
def test_a_point_that_cannot_be_replayed_from_ends_in_a_resync(
    point: ResumePoint, reason: ResyncReason
) -> None:
    journal = journal_with(5, size=2)  # the first three are gone from the ring
    point = point._replace(epoch=journal.epoch) if point.epoch == "this-run" else point
    frames, gap = opening_frames(journal, point, None)
    assert gap is not None and gap.reason is reason
    last = decoded(frames)[-1]
    assert last["type"] == "resync" and last["data"]["reason"] == reason.value


def test_a_bridge_without_redis_says_so_in_the_session() -> None:
    frames, _ = opening_frames(journal_with(0), None, 12.34)
    assert decoded(frames)[1]["data"] | {"epoch": "-"} == {
        "epoch": "-",
        "seq": 0,
        "redis": "down",
        "down_seconds": 12.3,
    }


# -- subscription frames --------------------------------------------------------------


def test_an_action_changes_the_subscription_and_says_what_changed() -> None:
    before = Subscription(only=True, queues=frozenset({b"a"}))
    after, answer = answer_action(before, b'{"action":"subscribe","queues":["b"]}')
    assert after == Subscription(only=True, queues=frozenset({b"a", b"b"}))
    assert unframed(answer) == {
        "type": "subscribed",
        "data": {
            "types": sorted(t.value for t in EventType),
            "queues": {"only": True, "count": 2, "added": ["b"], "removed": []},
        },
    }


@pytest.mark.parametrize(
    "frame,why",
    [
        (b'{"action":"subscribe","types":["nope"]}', "nope"),
        (b'{"action":"dance"}', "action must be one of"),
        (b'{"action":', "not JSON"),
        (b'{"action":"subscribe","queues":"emails"}', "list of strings"),
    ],
)
def test_a_bad_action_changes_nothing_and_says_why(frame: bytes, why: str) -> None:
    after, answer = answer_action(EVERYTHING, frame)
    message = unframed(answer)
    assert after is None and message["type"] == "error" and why in message["data"]["reason"]
