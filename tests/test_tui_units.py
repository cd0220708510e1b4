"""Pure parts of the TUI: the simulated query cache and the monitor (driven clocks, no I/O)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual.app import App
from textual.color import Color
from textual.theme import BUILTIN_THEMES

from bbb_tui.cache import BASE_KEYS, QueryCache, QueryStatus
from bbb_tui.client import ConnState, ConnStatus
from bbb_tui.details import copied_text, describe, frame_of, pretty_frame, saved_lines
from bbb_tui.monitor import (
    KEEP_FRAME,
    KINDS,
    MALFORMED,
    SESSION_WAIT,
    UNKNOWN,
    InBatch,
    Monitor,
    NotKept,
    RateMeter,
    clean,
)
from bbb_tui.recording import BadRecording, read_recording
from bbb_tui.widgets.bullmq import QueuesView, fitting
from bbb_tui.widgets.eventlog import KIND_COLOURS
from bbb_tui.widgets.status import status_text
from bbb_tui.widgets.themed import MIN_CONTRAST, ROLES, contrast, palette, readable, themed
from bridge.core.protocol import (
    GREETING,
    MAX_BATCH,
    Event,
    EventType,
    Malformed,
    encode_event,
    encode_session,
    parse_frame,
)


def event(event_type: EventType, ident: str) -> Event:
    return Event(event_type, ident, {})


def settle(cache: QueryCache, now: float) -> None:
    assert cache.latency is not None
    cache.tick(now + cache.latency)


def test_invalidation_marks_stale_and_refetches_after_the_latency() -> None:
    """An invalidated query is fetching at once and fresh, with new data, after the latency."""
    cache = QueryCache(latency=0.1)
    cache.handle(event(EventType.JOB_REFRESH, "j1"), now=0.0)
    table = cache.queries[("jobs/table",)]
    assert table.status is QueryStatus.FETCHING
    cache.tick(0.05)
    assert table.status is QueryStatus.FETCHING
    cache.tick(0.1)
    assert (table.status, table.fetches, table.last_duration) == (QueryStatus.FRESH, 1, 0.1)
    assert "j1" in table.data


def test_a_burst_restarts_the_fetch_instead_of_queueing_fetches() -> None:
    """500 invalidations in quick succession cost one completed fetch (the rest were cancelled)."""
    cache = QueryCache(latency=0.1)
    for i in range(500):
        cache.handle(event(EventType.JOB_REFRESH, "1"), now=i * 0.0001)
        cache.tick(i * 0.0001)
    settle(cache, 0.05)
    table = cache.queries[("jobs/table",)]
    assert (table.invalidations, table.fetches, table.cancelled) == (500, 1, 499)


def test_each_type_invalidates_exactly_its_section_3_keys() -> None:
    """queue-refresh touches only the queue keys; single-job-refresh only its own per-id key."""
    cache = QueryCache()
    cache.handle(event(EventType.QUEUE_REFRESH, "emails"), now=0.0)
    touched = {k for k, q in cache.queries.items() if q.invalidations}
    assert touched == {("queues/table",), ("queues/stats",)}
    cache.handle(event(EventType.SINGLE_JOB_REFRESH, "42"), now=0.0)
    assert cache.queries[("jobs/single", "42")].invalidations == 1
    assert cache.queries[("jobs/table",)].invalidations == 0
    cache.handle(event(EventType.SINGLE_QUEUE_REFRESH, "emails"), now=0.0)
    assert sum(q.invalidations for q in cache.queries.values()) == 3


def test_prefix_invalidation_matches_longer_keys() -> None:
    """Invalidating ("jobs/single",) reaches ("jobs/single", id) for every id."""
    cache = QueryCache()
    for ident in ("1", "2"):
        cache.handle(event(EventType.SINGLE_JOB_REFRESH, f"job-{ident}"), now=0.0)
    assert cache.invalidate(("jobs/single",), now=1.0) == 2


def test_invalidate_all_refetches_every_query() -> None:
    """After a reconnect every query is invalidated, base and per-id alike."""
    cache = QueryCache()
    cache.handle(event(EventType.JOB_LOG_REFRESH, "7"), now=0.0)
    settle(cache, 0.0)
    assert cache.invalidate_all(now=1.0) == len(BASE_KEYS) + 1
    assert all(q.status is QueryStatus.FETCHING for q in cache.queries.values())


def test_per_id_keys_are_bounded_least_recently_used_out() -> None:
    """Past max_id_keys, the least recently invalidated per-id key is evicted."""
    cache = QueryCache(max_id_keys=3)
    for ident in ("a", "b", "c"):
        cache.handle(event(EventType.SINGLE_JOB_REFRESH, ident), now=0.0)
    cache.handle(event(EventType.SINGLE_JOB_REFRESH, "a"), now=0.0)  # a is now recent
    cache.handle(event(EventType.SINGLE_JOB_REFRESH, "d"), now=0.0)
    per_id = {k[1] for k in cache.queries if len(k) > 1}
    assert per_id == {"a", "c", "d"}
    assert len(cache.queries) == len(BASE_KEYS) + 3


def test_fetched_data_reflects_events_seen_before_the_fetch() -> None:
    """The queue stats a refetch returns count the queue events seen so far."""
    cache = QueryCache(latency=0.1)
    for _ in range(3):
        cache.handle(event(EventType.SINGLE_QUEUE_REFRESH, "emails"), now=0.0)
    cache.handle(event(EventType.QUEUE_REFRESH, "payments"), now=0.0)
    settle(cache, 0.0)
    assert cache.queries[("queues/stats",)].data.startswith("emails:3, payments:1")
    assert cache.queries[("queues/table",)].data == "emails, payments"


def make_monitor(capacity: int = 100) -> Monitor:
    return Monitor(QueryCache(), capacity=capacity, clock=lambda: 5.0, wallclock=lambda: 0.0)


def test_monitor_counts_every_kind_and_keeps_malformed_lines_marked() -> None:
    """Events, unknown types and malformed frames are counted and logged as such."""
    monitor = make_monitor()
    monitor.feed(encode_event(EventType.JOB_REFRESH, "1"))
    monitor.feed('{"type": "session", "data": {"seq": 1}}')
    monitor.feed("{broken")
    monitor.feed(b"\xff\xfe")
    assert (monitor.received, monitor.events, monitor.problems) == (4, 1, 3)
    assert (monitor.by_type[UNKNOWN], monitor.by_type[MALFORMED]) == (1, 2)
    kinds = [entry[0] for entry in monitor.entries]
    assert kinds == ["job-refresh", UNKNOWN, MALFORMED, MALFORMED]


def test_monitor_drain_returns_only_new_lines_and_nothing_while_paused() -> None:
    """drain() gives each line once; paused lines are held and come back on replay."""
    monitor = make_monitor()
    monitor.feed(encode_event(EventType.JOB_REFRESH, "a"))
    assert len(monitor.drain()) == 1
    assert monitor.drain() == []
    monitor.set_paused(True)
    monitor.feed(encode_event(EventType.JOB_REFRESH, "b"))
    assert (monitor.drain(), monitor.held) == ([], 1)
    monitor.set_paused(False)
    assert [entry[1].split()[-1] for entry in monitor.visible_entries()] == ["jobId=a", "jobId=b"]


def test_monitor_log_ring_is_bounded_but_counts_everything() -> None:
    """Old lines drop off past capacity; the counters still count every message."""
    monitor = make_monitor(capacity=10)
    for i in range(25):
        monitor.feed(encode_event(EventType.SINGLE_JOB_REFRESH, str(i)))
    assert monitor.events == 25
    entries = monitor.drain()
    assert len(entries) == 10
    assert entries[-1][1].endswith("jobId=24")


def test_monitor_filter_hides_other_kinds() -> None:
    """With a filter, only the chosen kinds are shown; the rest are still kept."""
    monitor = make_monitor()
    monitor.feed(encode_event(EventType.JOB_REFRESH, "a"))
    monitor.feed(encode_event(EventType.QUEUE_REFRESH, "q"))
    monitor.shown = frozenset({"queue-refresh"})
    assert [entry[1].split()[-1] for entry in monitor.visible_entries()] == ["queueName=q"]
    monitor.shown = frozenset(KINDS)
    assert len(monitor.visible_entries()) == 2


def test_clean_keeps_hostile_text_on_one_bounded_line() -> None:
    """Control characters and escapes cannot break or flood a log line."""
    assert "\n" not in clean("a\nb\x1b[31m")
    assert len(clean("x" * 10_000)) == 120


def test_rate_meter_reports_the_last_complete_second() -> None:
    """The rate is the count of the last whole second; idle seconds count as zero."""
    meter = RateMeter(window=5)
    for _ in range(30):
        meter.add(10.2)
    assert meter.rate(10.9) == 0.0  # second 10 is not complete yet
    assert meter.rate(11.0) == 30.0
    assert meter.history(13.5) == [0, 0, 30, 0, 0]


def test_a_query_evicted_while_fetching_is_forgotten() -> None:
    """tick() drops fetches of evicted queries instead of failing on them."""
    cache = QueryCache(max_id_keys=1, latency=0.1)
    cache.handle(event(EventType.SINGLE_JOB_REFRESH, "a"), now=0.0)
    cache.handle(event(EventType.SINGLE_JOB_REFRESH, "b"), now=0.0)  # evicts a mid-fetch
    cache.tick(1.0)
    assert list(cache.per_id) == [("jobs/single", "b")]
    assert cache.per_id[("jobs/single", "b")].status is QueryStatus.FRESH
    assert not cache._fetching


def test_resync_invalidates_every_query_and_says_why() -> None:
    """A resync from the bridge refetches everything and is logged with its reason."""
    monitor = make_monitor()
    monitor.cache.handle(event(EventType.SINGLE_JOB_REFRESH, "7"), now=0.0)
    settle(monitor.cache, 0.0)
    monitor.feed('{"type":"resync","data":{"reason":"slow-client"}}')
    assert monitor.resyncs == 1
    assert all(q.status is QueryStatus.FETCHING for q in monitor.cache.queries.values())
    assert "resync from the bridge (slow-client)" in monitor.entries[-1][1]
    assert monitor.problems == 0  # a known extension, not an unknown type


@pytest.mark.parametrize("theme", sorted(BUILTIN_THEMES))
def test_every_colour_reads_on_every_builtin_theme(theme: str) -> None:
    """Each meaning's and each kind's colour keeps MIN_CONTRAST against the screen, the
    table and its zebra rows, in every built-in theme, dark or light."""
    app: App[None] = App()
    app.theme = theme
    variables = app.get_css_variables()
    for name, spec in {**ROLES, **KIND_COLOURS}.items():
        colour = themed(spec, variables).color
        if colour is None:
            continue  # dim or plain: the theme's foreground
        for ground in ("background", "surface", "panel"):
            back = Color.parse(variables[ground])
            shown = back + Color.from_rich_color(colour)
            assert contrast(shown, back) >= MIN_CONTRAST, (name, ground)


def test_the_status_line_keeps_the_state_and_cuts_the_url_in_the_middle() -> None:
    """At 64 cells the state, attempt and countdown fit whole; the URL is shown as typed
    (not percent-encoded) and cut in the middle; the error gives way first."""
    url = "ws://bridge.example.internal:8081/?types=job-refresh%2Cqueue-refresh&batch=20"
    status = ConnStatus(ConnState.RECONNECTING, url, attempt=12, retry_at=13.2,
                        error="connection refused by 10.0.0.1")  # fmt: skip
    text = status_text(status, make_monitor(), 10.0, palette=palette({}), width=64)
    first = text.plain.split("\n")[0]
    assert first.startswith("\N{CIRCLED WHITE BULLET} reconnecting  ws://")
    assert "attempt 12  retry in 3.2s" in first and "…" in first and "%2C" not in first
    assert cell_len(first.split("  (")[0]) == 64 - 5  # room left for the error to start
    wide = status_text(status, make_monitor(), 10.0, palette=palette({}), width=200)
    assert "types=job-refresh,queue-refresh&batch=20" in wide.plain


def test_a_keys_history_keeps_one_entry_per_fetch_with_its_burst() -> None:
    """Five invalidations during one fetch: one history entry, saying five, and when the
    burst began; the initial load says so."""
    cache = QueryCache(latency=0.1)
    cache.mount(0.0)
    settle(cache, 0.0)
    for n in range(5):
        cache.handle(event(EventType.JOB_REFRESH, "1"), 1.0 + n * 0.01)
    settle(cache, 1.04)
    history = cache.base[("jobs/table",)].history
    assert history is not None
    first, second = history
    assert (first.invalidated_at, first.invalidations) == (None, 0)  # the initial load
    assert (second.invalidated_at, second.invalidations) == (1.0, 5)
    assert second.started == 1.04 and second.finished == pytest.approx(1.14)


def test_a_batch_item_too_deep_to_parse_again_is_none_not_a_crash() -> None:
    """A line keeps its frame and parses it again when opened, deeper in the stack: data
    nested past what the parser takes there gives no frame (said so), never a crash."""
    depth = 5 * sys.getrecursionlimit()
    frame = '[{"type":"job-refresh","data":{"jobId":"1","a":' + "[" * depth + "]" * depth + "}}]"
    entry = ("job-refresh", "line", InBatch(frame, 0), 0.0)
    assert frame_of(entry[2]) is None and pretty_frame(entry[2]) is None
    assert copied_text(entry[2]) is None and saved_lines([entry]) == []
    assert "parse again" in dict(describe(entry))["frame"]


def test_lines_keep_their_frames_as_received_up_to_a_bound() -> None:
    """A line keeps its frame (a batch's: shared, with each line's place in it) if it is at
    most KEEP_FRAME long per message; a bigger one keeps its size only. So the frames the
    log holds add up to capacity x KEEP_FRAME at most; the lines and counts are as ever."""
    monitor = make_monitor(capacity=1000)
    small = encode_event(EventType.JOB_REFRESH, "small", 7)
    big = encode_event(EventType.SINGLE_JOB_REFRESH, "é" + "x" * KEEP_FRAME)
    items = [f'{{"type":"single-job-refresh","data":{{"jobId":"b{n}"}}}}' for n in range(70)]
    huge = '{"type":"single-job-refresh","data":{"jobId":"' + "y" * (KEEP_FRAME * 80) + '"}}'
    smuggled = "[" + ",".join([huge, *items]) + "]"  # one huge item among small ones
    shared = "[" + ",".join(items) + "]"
    monitor.feed_many([small, big, smuggled, shared])
    entries = list(monitor.entries)
    assert entries[0][2] == small and entries[1][2] == NotKept(len(big))
    assert {type(e[2]) for e in entries[2:73]} == {NotKept}  # 80 x KEEP_FRAME over 71 items
    assert [e[2] for e in entries[73:]] == [InBatch(shared, n) for n in range(70)]
    kept = {id(e[2].frame if isinstance(e[2], InBatch) else e[2]) for e in entries}
    assert len(kept) == 4  # the small frame, the batch frame 70 lines share, 2 NotKept
    assert monitor.events == 1 + 1 + 71 + 70 and "jobId=éxxx" in entries[1][1]
    assert json.loads(frame_of(entries[80][2]) or "") == [json.loads(items[7])]  # a batch of one
    assert copied_text(entries[0][2]) == small.decode()
    alone = make_monitor()
    alone.feed(big)
    settle(alone.cache, 5.0)
    query = alone.cache.per_id[("jobs/single", "é" + "x" * KEEP_FRAME)]
    assert cell_len(query.data) <= 1000  # the answer is cut before it is made safe


def test_a_non_ascii_frame_is_copied_as_ascii_json() -> None:
    frame = '{"type":"job-refresh","data":{"jobId":"caf\u00e9 \u202e"}}'
    raw = frame.encode().decode("unicode_escape")
    copied = copied_text(raw)
    assert copied is not None and copied.isascii() and json.loads(copied) == json.loads(raw)
    assert copied_text("not json \x1b]0;t\x07") == "not json \\x1b]0;t\\x07"


def test_a_recording_with_times_no_clock_shows_is_refused(tmp_path: Path) -> None:
    for when in ("NaN", "Infinity", "-1", "1e20", "true"):
        path = tmp_path / "bad.jsonl"
        path.write_text(f'{{"t": {when}, "frame": "x"}}\n')
        with pytest.raises(BadRecording):
            list(read_recording(str(path)))


def test_narrow_views_drop_their_least_useful_columns_first() -> None:
    widths = QueuesView.WIDTHS
    assert fitting(widths, QueuesView.DROP_FIRST, 200) == tuple(widths)
    narrow = fitting(widths, QueuesView.DROP_FIRST, 78)
    assert narrow[0] == "queue" and "alarms" in narrow and "done/min" not in narrow
    assert sum(widths[name] for name in narrow) <= 78


def test_a_colour_too_faint_for_the_theme_is_moved_toward_its_foreground() -> None:
    """Pale yellow on a light panel reads 1.1:1: it is blended toward the foreground until
    it keeps MIN_CONTRAST on every background; a colour that reads stays as it is."""
    light = {"background": "#FFFFFF", "surface": "#F5F5F5", "panel": "#E8E8E8",
             "foreground": "#1A1A1A"}  # fmt: skip
    faint = Color.parse("#FFF3B0")
    assert contrast(faint, Color.parse("#E8E8E8")) < 1.5
    shown = Color.parse(readable("#FFF3B0", light))
    grounds = ("background", "surface", "panel")
    assert all(contrast(shown, Color.parse(light[g])) >= MIN_CONTRAST for g in grounds)
    assert readable("#1A1A1A", light) == Color.parse("#1A1A1A").hex


def ev(ident: str) -> dict[str, object]:
    return {"type": "job-refresh", "data": {"jobId": ident}}


def replayed(frames: list[str | bytes]) -> tuple[list[str], list[str]]:
    """The log lines (less their times) a monitor shows for ``frames``, then for the
    recording ``s`` makes of them: what a replay of the saved file shows."""
    live = make_monitor(capacity=5000)
    live.feed_many(frames)
    lines = [json.loads(line)["frame"] for line in saved_lines(live.entries)]
    again = make_monitor(capacity=5000)
    again.feed_many(lines)
    return [e[1][14:] for e in live.entries], [e[1][14:] for e in again.entries]


def test_a_saved_batch_replays_to_the_same_lines() -> None:
    """Each message of a batch is saved as a batch of one: replayed, it reads as the live
    client read it (a nested list stays malformed; a malformed item keeps its text); a
    batch with bad UTF-8 is saved too."""
    frames: list[str | bytes] = [
        json.dumps([[ev("5")], ev("6")]),
        json.dumps([{"a": 1, "b": [1, 2]}, ev("1")]),
        b'[{"type":"job-refresh","data":{"jobId":"a\xff"}},{"type":"job-refresh","data":{}}]',
    ]
    live, again = replayed(frames)
    assert live == again and len(live) == 6
    assert "not a JSON object" in live[0] and "no string 'type'" in live[2]


def test_a_big_batch_is_kept_by_its_share_per_message() -> None:
    """A batch frame over KEEP_FRAME is kept if it holds at most KEEP_FRAME per message."""
    monitor = make_monitor()
    frame = json.dumps([ev("x" * 2000 + str(n)) for n in range(10)])
    assert KEEP_FRAME < len(frame) <= 10 * KEEP_FRAME
    monitor.feed_many([frame])
    assert [e[2] for e in monitor.entries] == [InBatch(frame, n) for n in range(10)]
    assert json.loads(copied_text(monitor.entries[3][2]) or "") == ev("x" * 2000 + "3")


def test_a_batch_of_bad_items_costs_a_bounded_number_of_lines() -> None:
    """5,000 malformed items in one batch: all counted, a thousand logged, one line for the
    rest; a batch longer than MAX_BATCH is one malformed frame."""
    monitor = make_monitor(capacity=5000)
    monitor.feed_many(["[" + ",".join(["1"] * 5000) + "," + json.dumps(ev("ok")) + "]"])
    assert monitor.by_type[MALFORMED] == 5000 and monitor.events == 1
    assert len(monitor.entries) == 1000 + 1 + 1
    assert any("4,000 more malformed messages" in e[1] for e in monitor.entries)
    assert parse_frame("[" + ",".join(["1"] * (MAX_BATCH + 1)) + "]") == Malformed(
        f"a batch of more than {MAX_BATCH:,} messages", ("[" + "1," * 100)[:200]
    )


def test_a_session_in_the_read_after_the_greeting_still_resumes() -> None:
    """Reconnected, the greeting and the session may come in separate reads: no refetch.
    A bridge that sends an event, or nothing for SESSION_WAIT, after its greeting cannot
    resume: everything is refetched, once."""
    now = [5.0]
    for after in ("session", "event", "silence"):
        monitor = Monitor(QueryCache(), clock=lambda: now[0], wallclock=lambda: 0.0)
        monitor.feed_many(
            [GREETING, encode_session("e1", 3), encode_event(EventType.JOB_REFRESH, "a", 3)]
        )
        monitor.connected(reconnect=True)
        before = monitor.cache.base[("jobs/table",)].invalidations
        monitor.feed(GREETING)  # alone in its read
        monitor.check()
        if after == "session":
            monitor.feed(encode_session("e1", 3))
        elif after == "event":
            monitor.feed(encode_event(EventType.QUEUE_REFRESH, "q"))
        else:
            now[0] += SESSION_WAIT
            monitor.check()
        refetched = monitor.cache.base[("jobs/table",)].invalidations - before
        assert refetched == (0 if after == "session" else 1), after
