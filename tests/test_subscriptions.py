"""Selective subscriptions: ?types=, ?queue=, and subscribe/unsubscribe frames (issue 7)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.cli import parse, settings_from
from bbb_tui.client import ConnState
from bridge.core.protocol import Change, EventType, pubsub_change
from bridge.core.subscriptions import (
    EVERYTHING,
    PLAIN,
    Delivery,
    Subscription,
    SubscriptionError,
    parse_action,
    parse_query,
)
from bridge.serving import delivery
from bridge.serving.hub import Hub, Selection
from bridge.serving.peer import Peer
from bridge.serving.server import Bridge
from bridge.tools.embedded import RedisServer
from tests.helpers import Publisher, expect_greeting, messages_until, named, recv_json, wait_for

Q, SQ, J = EventType.QUEUE_REFRESH, EventType.SINGLE_QUEUE_REFRESH, EventType.JOB_REFRESH

# -- the pure part -----------------------------------------------------------------


def published(subscription: Subscription, event_type: EventType, payload: bytes) -> bool:
    """Whether ``subscription`` wants this event published on Redis."""
    event_type, _, queue, _ = pubsub_change(event_type, payload)
    return subscription.wants(event_type, queue)


def test_types_and_queues_choose_events() -> None:
    """Types choose events; a queue filter chooses the events of its queues: published
    queue events name theirs ('1' and published job events name none, and pass), stream
    events all do."""
    only_emails = parse_query("queue=emails")
    assert published(only_emails, Q, b"emails") and published(only_emails, SQ, b"emails")
    assert not published(only_emails, Q, b"payments")
    assert published(only_emails, Q, b"1")  # "some queue changed" may be this one
    assert published(only_emails, J, b"42")  # published job events name no queue
    assert only_emails.wants(J, b"emails") and not only_emails.wants(J, b"payments")  # streams
    queue_types = parse_query("types=queue-refresh,single-queue-refresh")
    assert published(queue_types, Q, b"x") and not published(queue_types, J, b"x")
    assert EVERYTHING.everything and not only_emails.everything


def test_subscribe_and_unsubscribe_work_from_everything_and_from_a_list() -> None:
    """Unsubscribing from everything makes a denylist, subscribing back undoes it; allowlists grow
    and shrink."""
    fewer = EVERYTHING.apply("unsubscribe", ["job-refresh"], ["noisy"])
    assert not fewer.wants(J, None) and not fewer.wants(Q, b"noisy") and fewer.wants(Q, b"a")
    back = fewer.apply("subscribe", ["job-refresh"], ["noisy"])
    assert back == EVERYTHING
    only = parse_query("queue=a").apply("subscribe", [], ["b"])
    assert only.wants(Q, b"b") and not only.wants(Q, b"c")
    assert not only.apply("unsubscribe", [], ["a", "b"]).wants(Q, b"a")


@pytest.mark.parametrize(
    "query", ["types=nope", "types=job-refresh,nope", "&".join(f"queue={i}" for i in range(300))]
)
def test_bad_filters_say_why(query: str) -> None:
    """Unknown types and too many queues on the URL are errors."""
    with pytest.raises(SubscriptionError):
        parse_query(query)


@pytest.mark.parametrize(
    "text",
    ["nope", "[]", '{"types": []}', '{"action": "subscribe", "types": "job-refresh"}',
     '{"action": "subscribe", "queues": [1]}'],
)  # fmt: skip
def test_bad_actions_say_why(text: str) -> None:
    """Action frames that are not JSON objects with string lists are errors."""
    with pytest.raises(SubscriptionError):
        parse_action(text)


def test_the_tui_asks_the_bridge_to_filter() -> None:
    """bbb-tui --types/--queue (or BBB_QUEUES) put the filter on the connection URL."""
    args = parse(["--types", "queue-refresh", "--queue", "emails"], {})
    assert settings_from(args).url == "ws://localhost:8081/?types=queue-refresh&queue=emails"
    args = parse([], {"BBB_QUEUES": "a,b"})
    assert settings_from(args).url == "ws://localhost:8081/?queue=a&queue=b"


# -- a real bridge -----------------------------------------------------------------


async def receive_until(ws: ClientConnection, last: str) -> list[tuple[str, str]]:
    """(type, name) of every event up to the one that names ``last``."""
    return [(m["type"], named(m)) for m in await messages_until(ws, last)]


MIX = [
    (J, "j1"),
    (Q, "emails"),
    (Q, "payments"),
    (SQ, "emails"),
    (EventType.LOG_REFRESH, "j1"),
    (Q, "end"),
]


async def test_each_client_gets_what_it_asked_for(bridge: Bridge, publish: Publisher) -> None:
    """Three clients with three filters each get exactly their events, and nothing else is sent."""
    url = f"ws://127.0.0.1:{bridge.port}/"
    async with (
        connect(url) as everything,
        connect(url + "?types=queue-refresh") as queue_refresh,
        connect(url + "?queue=emails&queue=end") as emails,
    ):
        for ws in (everything, queue_refresh, emails):
            await expect_greeting(ws)
        before = bridge.hub.deliveries
        for event_type, ident in MIX:
            await publish(event_type, ident)
        assert await receive_until(everything, "end") == [(t.value, i) for t, i in MIX]
        assert await receive_until(queue_refresh, "end") == [
            ("queue-refresh", "emails"),
            ("queue-refresh", "payments"),
            ("queue-refresh", "end"),
        ]
        assert await receive_until(emails, "end") == [
            ("job-refresh", "j1"),
            ("queue-refresh", "emails"),
            ("single-queue-refresh", "emails"),
            ("log-refresh", "j1"),
            ("queue-refresh", "end"),
        ]
        # Nothing was sent that nobody wanted: 6 + 3 + 5 messages.
        assert bridge.hub.deliveries - before == 14
        assert bridge.hub.events_out[Q] == 3 + 3 + 2


async def test_subscriptions_change_at_run_time(bridge: Bridge, publish: Publisher) -> None:
    """subscribe/unsubscribe frames change what arrives next, and are answered; errors too."""
    async with connect(f"ws://127.0.0.1:{bridge.port}/") as ws:
        await expect_greeting(ws)
        await ws.send('{"action": "unsubscribe", "types": ["job-refresh"]}')
        reply = await recv_json(ws)
        assert reply["type"] == "subscribed"
        assert "job-refresh" not in reply["data"]["types"]
        assert reply["data"]["queues"] == {"only": False, "count": 0, "added": [], "removed": []}
        await publish(J, "unwanted")
        await publish(Q, "wanted")
        assert (await recv_json(ws))["data"] == {"queueName": "wanted"}
        await ws.send('{"action": "subscribe", "types": ["no-such-type"]}')
        error = await recv_json(ws)
        assert error["type"] == "error" and "no-such-type" in error["data"]["reason"]
        await ws.send('{"action": "subscribe", "types": ["job-refresh"]}')
        assert (await recv_json(ws))["type"] == "subscribed"
        await publish(J, "wanted-again")
        assert (await recv_json(ws))["data"] == {"jobId": "wanted-again"}


async def test_a_bad_filter_on_the_url_is_a_400(bridge: Bridge) -> None:
    """An unknown type on the URL is refused with 400 and the reason."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{bridge.port}/?types=jobs")
    assert refused.value.response.status_code == 400
    assert b"unknown type" in refused.value.response.body


async def test_a_replay_is_filtered_too(bridge: Bridge, publish: Publisher) -> None:
    """A resuming client with a filter is replayed only the events it wants."""
    async with connect(f"ws://127.0.0.1:{bridge.port}/") as ws:
        session = await expect_greeting(ws)
    for event_type, ident in MIX:
        await publish(event_type, ident)
    await wait_for(lambda: bridge.journal.seq == session["seq"] + len(MIX))
    query = f"?since={session['seq']}&epoch={session['epoch']}&types=queue-refresh"
    async with connect(f"ws://127.0.0.1:{bridge.port}/{query}") as ws:
        await expect_greeting(ws)
        assert await receive_until(ws, "end") == [
            ("queue-refresh", "emails"),
            ("queue-refresh", "payments"),
            ("queue-refresh", "end"),
        ]


async def test_the_tui_with_types_sees_only_those(
    bridge: Bridge, redis_server: RedisServer, prefix: str
) -> None:
    """bbb-tui with types=queue-refresh receives only those of the seed events it fires."""
    url = f"ws://127.0.0.1:{bridge.port}/?types=queue-refresh"
    app = BbbApp(TuiSettings(url=url, redis_url=redis_server.url, prefix=prefix))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.status.state is ConnState.CONNECTED, 10, what="connected")
        await pilot.press("a")  # the four seed events: one of them is a queue-refresh
        await wait_for(lambda: app.monitor.events == 1, what="the queue-refresh")
        await pilot.press("a")
        await wait_for(lambda: app.monitor.events == 2, what="the second one")
        assert set(app.monitor.by_type) == {"queue-refresh"}


def test_subscription_is_hashable_for_grouping() -> None:
    """Equal subscriptions are equal keys (the hub groups clients by them)."""
    assert {parse_query("queue=a"): 1}[Subscription(only=True, queues=frozenset({b"a"}))] == 1


QUEUE_NAMES = [b"1", b"emails", b"payments", b"reports"]
#: Events as the sources make them: published (only queue events name a queue) and read
#: from BullMQ's streams (every one names its queue).
CHANGES = st.one_of(
    st.builds(pubsub_change, st.sampled_from(list(EventType)), st.sampled_from(QUEUE_NAMES)),
    st.builds(
        lambda event_type, queue: (event_type, b"7", queue, b""),
        st.sampled_from(list(EventType)),
        st.sampled_from(QUEUE_NAMES[1:]),
    ),
)


@given(
    st.lists(CHANGES, max_size=30),
    st.lists(
        st.builds(
            Subscription,
            types=st.frozensets(st.sampled_from(list(EventType))),
            only=st.booleans(),
            queues=st.frozensets(st.sampled_from(QUEUE_NAMES[1:])),
        ),
        max_size=6,
    ),
)
def test_the_hub_selects_exactly_what_each_subscription_wants(
    events: list[Change], subscriptions: list[Subscription]
) -> None:
    """The indexed selection gives each subscription the frames its wants() picks, in order,
    with their counts by type; groups with the same wants share one list of frames."""
    frames = [f"frame-{n}".encode() for n in range(len(events))]
    selection = Selection(frames, events)
    for subscription in [EVERYTHING, *subscriptions]:
        chosen, counts = selection.chosen(subscription)
        expected = [
            f for f, e in zip(frames, events, strict=True) if subscription.wants(e[0], e[2])
        ]
        assert chosen == expected
        assert counts == Counter(e[0] for e in events if subscription.wants(e[0], e[2]))


class Recorder:
    """What the hub asks of a client (a pure unit: no socket): the bytes written to it."""

    def __init__(self) -> None:
        self.data = b""
        self.subscription, self.delivery = EVERYTHING, PLAIN

    def write(self, data: bytes) -> None:
        self.data += data


def joined(hub: Hub, subscriptions: list[Subscription], how: Delivery) -> list[Recorder]:
    clients = [Recorder() for _ in subscriptions]
    for client, subscription in zip(clients, subscriptions, strict=True):
        hub.join(cast(Peer, client), b"", subscription, how)
    return clients


@given(
    st.lists(
        st.lists(
            CHANGES,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(
        st.builds(
            Subscription,
            types=st.frozensets(st.sampled_from(list(EventType))),
            only=st.booleans(),
            queues=st.frozensets(st.sampled_from(QUEUE_NAMES[1:])),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_the_hub_writes_each_client_exactly_its_events(
    batches: list[list[Change]], subscriptions: list[Subscription]
) -> None:
    """Through the hub's queue index and shared encodings, many groups at once (each
    broadcast makes lists that live and die while others are encoded): every client's
    bytes are its wanted frames, in order, and nothing else."""
    hub = Hub()
    clients = joined(hub, subscriptions, PLAIN)
    wanted: list[list[bytes]] = [[] for _ in clients]
    for n, events in enumerate(batches):
        frames = [f"{n}-{i}".encode() for i in range(len(events))]
        hub.broadcast(frames, events)
        sent = list(zip(frames, events, strict=True))
        for mine, subscription in zip(wanted, subscriptions, strict=True):
            mine += [f for f, e in sent if subscription.wants(e[0], e[2])]
    for client, mine in zip(clients, wanted, strict=True):
        assert client.data == b"".join(delivery.encode([f], PLAIN) for f in mine)


async def test_batched_groups_flush_together_each_with_its_own_events() -> None:
    """Groups with one batch window share one timer: each gets one array of exactly the
    events it wanted from every broadcast of the window, and the window's end empties
    them all."""
    how = Delivery(batch=0.02)
    hub = Hub()
    subscriptions = [
        Subscription(only=True, queues=frozenset({b"a"})),
        Subscription(only=True, queues=frozenset({b"b"})),
        Subscription(only=True, queues=frozenset({b"c"})),
        Subscription(types=frozenset({Q})),
        EVERYTHING,
    ]
    clients = joined(hub, subscriptions, how)
    everything: list[tuple[bytes, Change]] = []
    for n in range(3):
        events = [pubsub_change(*e) for e in ((Q, b"a"), (Q, b"b"), (SQ, b"c"), (J, b"j"))]
        frames = [f"{n}-{i}".encode() for i in range(len(events))]
        hub.broadcast(frames, events)
        everything += zip(frames, events, strict=True)
    assert all(client.data == b"" for client in clients)  # held for the window
    await asyncio.sleep(0.1)
    for client, subscription in zip(clients, subscriptions, strict=True):
        mine = [f for f, e in everything if subscription.wants(e[0], e[2])]
        assert client.data == delivery.encode(mine, how), subscription


async def test_a_subscription_change_during_a_replay_holds(
    bridge: Bridge, publish: Publisher
) -> None:
    """A client that unsubscribes while its replay is still being sent gets none of those
    events after the answer: neither from the rest of the replay nor live."""
    async with connect(f"ws://127.0.0.1:{bridge.port}/") as ws:
        session = await expect_greeting(ws)
    pipe = publish.client.pipeline(transaction=False)
    for n in range(3000):
        pipe.publish(publish.channel(EventType.SINGLE_JOB_REFRESH), f"{n:04d}" + "x" * 1000)
    await pipe.execute()
    await wait_for(lambda: bridge.journal.seq == session["seq"] + 3000)
    query = f"?since={session['seq']}&epoch={session['epoch']}"
    async with connect(f"ws://127.0.0.1:{bridge.port}/{query}", max_size=2**20) as ws:
        await ws.send('{"action": "unsubscribe", "types": ["single-job-refresh"]}')
        await publish(EventType.SINGLE_JOB_REFRESH, "live")
        await publish(EventType.QUEUE_REFRESH, "end")
        after_answer: list[str] = []
        answered = False
        while True:
            message = await recv_json(ws)
            if message["type"] == "subscribed":
                answered = True
            elif answered:
                after_answer.append(message["type"])
                if message["data"].get("queueName") == "end":
                    break
    assert after_answer == ["queue-refresh"]
