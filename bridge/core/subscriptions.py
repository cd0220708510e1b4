"""What each client wants, and how: selective subscriptions and delivery (pure, no I/O).

A client narrows what it receives on the connection URL, ``?types=job-refresh,queue-refresh``
and ``?queue=emails`` (repeatable), and changes it at run time with frames such as
``{"action": "subscribe", "types": ["log-refresh"], "queues": ["emails"]}`` (or
``"unsubscribe"``). The bridge filters, so a client costs nothing for what it does not want.

A queue filter passes the events of its queues and those that name no queue. Published
events name one only in ``queue-refresh`` and ``single-queue-refresh`` (``"1"``, "some
queue changed", names none): published job, scheduler and log events do not say which
queue they belong to, so a queue filter cannot drop them (use ``types``). Every event
read from BullMQ's streams names its queue. With a filter, a client sees gaps in ``seq``:
they are the events it did not want.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from bridge.core.protocol import EventType

MAX_BATCH_MS = 10_000
ALL_TYPES: frozenset[EventType] = frozenset(EventType)
#: Per client, a filter is small by nature; these bounds keep it so (memory per client,
#: and the work of one action, are bounded by them).
MAX_QUEUES = 256
MAX_QUEUE_NAME = 256  # bytes
MAX_QUEUE_BYTES = 16 * 1024  # all of a client's queue names together
ACTIONS = ("subscribe", "unsubscribe")


class SubscriptionError(ValueError):
    """A filter or an action that cannot be applied (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """Types wanted, and queues: only ``queues`` (``only``), or all but them (not ``only``).

    Frozen and hashable: the hub groups clients by subscription and frames each
    batch once per group.
    """

    types: frozenset[EventType] = ALL_TYPES
    only: bool = False
    queues: frozenset[bytes] = frozenset()

    @property
    def everything(self) -> bool:
        return self.types == ALL_TYPES and not self.only and not self.queues

    def wants(self, event_type: EventType, queue: bytes | None) -> bool:
        """Whether an event of this type, of this queue (None: of none), is wanted."""
        if event_type not in self.types:
            return False
        return queue is None or (queue in self.queues) is self.only

    def apply(self, action: str, types: Iterable[str], queues: Iterable[str]) -> Subscription:
        """The subscription after ``{"action": action, "types": ..., "queues": ...}``."""
        if action not in ACTIONS:
            raise SubscriptionError(f"action must be one of {', '.join(ACTIONS)}")
        named_types = _types(types)
        named_queues = _queues(queues)
        add = action == "subscribe"
        new_types = self.types | named_types if add else self.types - named_types
        # Adding to an allowlist, or taking out of a denylist, and the other way round.
        grow = add is self.only
        new_queues = self.queues | named_queues if grow else self.queues - named_queues
        _check_size(new_queues)
        return replace(self, types=new_types, queues=new_queues)

    def changes(self, before: Subscription) -> dict[str, Any]:
        """What a client is told after an action: the types it now gets (eight at most) and
        what changed in its queue filter, never the whole list (an answer is no larger than
        the question)."""
        return {
            "types": sorted(t.value for t in self.types),
            "queues": {
                "only": self.only,
                "count": len(self.queues),
                "added": sorted(q.decode(errors="replace") for q in self.queues - before.queues),
                "removed": sorted(q.decode(errors="replace") for q in before.queues - self.queues),
            },
        }


EVERYTHING = Subscription()


def parse_query(query: str) -> Subscription:
    """The subscription a connection URL asks for; raises SubscriptionError if malformed."""
    params = parse_qs(query)
    subscription = EVERYTHING
    if "types" in params:
        names = [n for value in params["types"] for n in value.split(",") if n.strip()]
        subscription = replace(subscription, types=_types(names))
    if "queue" in params:
        queues = _queues(params["queue"])
        _check_size(queues)
        subscription = replace(subscription, only=True, queues=queues)
    return subscription


def connection_url(url: str, types: str | None, queues: Iterable[str], batch_ms: int = 0) -> str:
    """``url`` with ``?types=...&queue=...&batch=...`` (checked as the bridge would)."""
    params: list[tuple[str, str]] = []
    if types:
        names = [n.strip() for n in types.split(",") if n.strip()]
        _types(names)
        params.append(("types", ",".join(names)))
    params += [("queue", q.strip()) for q in queues if q.strip()]
    if batch_ms:
        params.append(("batch", str(batch_ms)))
    if not params:
        return url
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


def parse_action(text: str) -> tuple[str, list[str], list[str]]:
    """Read ``{"action": ..., "types": [...], "queues": [...]}`` from a client frame."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise SubscriptionError("not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("action"), str):
        raise SubscriptionError('expected {"action": "subscribe"|"unsubscribe", ...}')
    lists = []
    for key in ("types", "queues"):
        value = message.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SubscriptionError(f"{key!r} must be a list of strings")
        lists.append(value)
    return message["action"], lists[0], lists[1]


def _queues(names: Iterable[str]) -> frozenset[bytes]:
    queues = frozenset(name.encode() for name in names)
    if any(len(q) > MAX_QUEUE_NAME for q in queues):
        raise SubscriptionError(f"a queue name is at most {MAX_QUEUE_NAME} bytes")
    return queues


def _check_size(queues: frozenset[bytes]) -> None:
    if len(queues) > MAX_QUEUES:
        raise SubscriptionError(f"at most {MAX_QUEUES} queues per client")
    if sum(map(len, queues)) > MAX_QUEUE_BYTES:
        raise SubscriptionError(f"at most {MAX_QUEUE_BYTES} bytes of queue names per client")


def _types(names: Iterable[str]) -> frozenset[EventType]:
    known = {t.value: t for t in EventType}
    names = [n.strip() for n in names]
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise SubscriptionError(
            f"unknown type(s) {', '.join(map(repr, unknown))[:200]}; "
            f"known: {', '.join(t.value for t in EventType)}"
        )
    return frozenset(known[n] for n in names)


class Delivery(NamedTuple):
    """How a client gets its events (``?batch=``, permessage-deflate): ``batch``, seconds to
    hold events (0: at once); ``deflate``, the window bits it accepted, or 0. The hub groups
    clients by it; :mod:`bridge.serving.delivery` makes the bytes."""

    batch: float = 0.0
    deflate: int = 0


PLAIN = Delivery()


def parse_batch(query: str) -> float:
    """``?batch=<ms>`` as seconds (0 when absent); raises ValueError with a one-line reason."""
    values = parse_qs(query).get("batch")
    if not values:
        return 0.0
    raw = values[-1]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_BATCH_MS:
        raise ValueError(f"batch= must be a whole number of milliseconds, 0 to {MAX_BATCH_MS}")
    return int(raw) / 1000
