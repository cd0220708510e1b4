"""``bbb-tui``: parse flags and environment, build the app, run it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

from textual.theme import BUILTIN_THEMES

from bbb_tui.app import BbbApp, TuiSettings
from bridge.checks import nonempty, split_redis_urls
from bridge.config import (
    BULLMQ_PREFIX,
    DEFAULT_REDIS_URL,
    PREFIX,
    REDIS_URL,
    TOKEN,
    TOKEN_FILE,
    WEBSOCKET_URL,
    ConfigError,
)
from bridge.core.protocol import EventType
from bridge.core.sanitize import sanitize
from bridge.core.subscriptions import MAX_BATCH_MS, MAX_QUEUES, connection_url
from bridge.core.workload import DEFAULT_RATE, MAX_RATE, MIN_RATE
from bridge.options import Command, Option, boolean, choice, number, parse_command, whole

#: The demo's BullMQ prefix (unless --bullmq-prefix says otherwise): in a Redis of the
#: user's, its queues stay apart from theirs, and are removed on exit.
DEMO_PREFIX = "bbb-demo"


def event_types(raw: str) -> str:
    """Comma-separated event types, each one of the eight."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    known = {t.value for t in EventType}
    if not names or any(name not in known for name in names):
        raise ValueError("must be event types, comma-separated: " + ", ".join(sorted(known)))
    return ",".join(names)


def queue_names(raw: list[str]) -> list[str]:
    names = [name.strip() for name in raw if name.strip()]
    if len(names) > MAX_QUEUES:
        raise ValueError(f"at most {MAX_QUEUES} queues")
    return names


OPTIONS: tuple[Option, ...] = (
    WEBSOCKET_URL,
    TOKEN,
    TOKEN_FILE,
    Option(
        "--types",
        "receive only these event types, comma-separated (the bridge filters)",
        event_types,
        env=("BBB_TYPES",),
        metavar="T1,T2",
        default_text="all",
        bad=("nope", "job-refresh,bogus", ","),
    ),
    Option(
        "--queue",
        "receive only these queues' events; repeat it or comma-separate them (published job "
        "events name no queue and still arrive)",
        queue_names,
        env=("BBB_QUEUES",),
        env_text="BBB_QUEUES (comma-separated)",
        metavar="NAME",
        repeat=True,
        default_text="all",
        bad=(",".join(f"q{n}" for n in range(MAX_QUEUES + 1)),),
    ),
    Option(
        "--batch",
        "ask the bridge for events in batches every MS milliseconds (fewer frames, for slow "
        "links); 0: each event at once",
        whole(0, MAX_BATCH_MS),
        0,
        env=("BBB_BATCH",),
        metavar="MS",
    ),
    REDIS_URL,
    PREFIX,
    Option(
        "--data",
        "what the query cache fetches: `simulated`, `bullmq` (real queues, counts, jobs and "
        "logs read from BullMQ's keys at `--redis-url`) or `auto` (`bullmq` when queues exist "
        "there)",
        choice("auto", "simulated", "bullmq"),
        "auto",
        env=("BBB_DATA",),
    ),
    BULLMQ_PREFIX,
    Option(
        "--theme",
        "colours: any Textual theme (" + ", ".join(sorted(BUILTIN_THEMES)) + ")",
        choice(*sorted(BUILTIN_THEMES)),
        env=("BBB_THEME",),
        metavar="NAME",
        default_text="textual-dark",
    ),
    Option(
        "--record",
        "append every frame received, with when it arrived, to this JSON Lines file",
        nonempty,
        env=("BBB_RECORD",),
        metavar="FILE",
        bad=("",),
    ),
    Option(
        "--replay",
        "play a recording (`--record`) back instead of connecting to a bridge",
        nonempty,
        env=("BBB_REPLAY",),
        metavar="FILE",
        bad=("",),
    ),
    Option(
        "--save-dir",
        "where `s` saves the kept events (a recording `--replay` reads)",
        nonempty,
        env=("BBB_SAVE_DIR",),
        metavar="DIR",
        default_text="the working folder",
        bad=("",),
    ),
    Option(
        "--speed",
        "with `--replay`: times the recorded pace (0: as fast as possible)",
        number(0, 10_000),
        1.0,
        env=("BBB_REPLAY_SPEED",),
        metavar="N",
    ),
    Option(
        "--fetch-latency",
        "seconds each simulated query refetch takes",
        number(0, 60),
        0.15,
        env=("BBB_FETCH_LATENCY",),
        metavar="SECONDS",
    ),
    Option(
        "--log-lines",
        "event log lines kept",
        whole(10, 1_000_000),
        2000,
        env=("BBB_LOG_LINES",),
        metavar="N",
    ),
    Option(
        "--read-only",
        "no key publishes anything (1-4 and a are off and hidden)",
        boolean,
        False,
        env=("BBB_READ_ONLY",),
        switch=True,
    ),
    Option(
        "--demo",
        "start Redis (the configured one if it answers, else a private `redis-server`), a "
        "bridge and real BullMQ producers and workers (with `--data simulated`, a synthetic "
        "publisher) first, and watch them; quitting stops them all",
        boolean,
        False,
        env=("BBB_DEMO",),
        switch=True,
    ),
    Option(
        "--rate",
        "with `--demo`: jobs (or with `--data simulated`, job changes) per second, changed "
        "live with `+` and `-`",
        number(MIN_RATE, MAX_RATE),
        DEFAULT_RATE,
        env=("BBB_DEMO_RATE",),
        metavar="N",
    ),
)

COMMAND = Command(
    "bbb-tui",
    "watch a Better Bull Board bridge live",
    OPTIONS,
    "Watch a Better Bull Board bridge live: connection, event log, and the cache "
    "invalidations the web client would do; with BullMQ in Redis, its real queues and jobs. "
    "Keys: 1-4/a fire test events, / search, k/j and Enter open a line, y copy, s save, "
    "Tab the table, v views, p pause, f filter, Ctrl+P every action, ? help, q quit.",
)


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """Flags, then the environment, then defaults, all checked; raises ConfigError."""
    return parse_command(COMMAND, argv, environ, prog="bbb-tui")


def settings_from(args: argparse.Namespace) -> TuiSettings:
    return TuiSettings(
        url=connection_url(args.url, args.types, args.queue or [], args.batch),
        # Test events are published through the first node listed.
        redis_url=split_redis_urls(args.redis_url or DEFAULT_REDIS_URL)[0],
        prefix=args.prefix,
        fetch_latency=args.fetch_latency,
        log_lines=args.log_lines,
        token=args.token,
        token_file=args.token_file,
        read_only=args.read_only,
        data=args.data,
        bullmq_prefix=args.bullmq_prefix,
        theme=args.theme,
        record=args.record,
        replay=args.replay,
        replay_speed=args.speed,
        save_dir=args.save_dir,
    )


def with_query_of(url: str, other: str) -> str:
    """``url`` with ``other``'s query string (the demo bridge, with the user's filters)."""
    query = urlsplit(other).query
    return urlunsplit(urlsplit(url)._replace(path="/", query=query)) if query else url


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        args = parse(sys.argv[1:] if argv is None else argv, env)
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"bbb-tui: error: {sanitize(str(exc))}", file=sys.stderr)
        return 2
    if settings.save_dir is not None and not os.path.isdir(settings.save_dir):
        print(f"bbb-tui: error: --save-dir: {sanitize(settings.save_dir)} is not a folder",
              file=sys.stderr)  # fmt: skip
        return 2
    if settings.record is not None and (problem := unwritable(settings.record)):
        print(f"bbb-tui: error: {sanitize(problem)}", file=sys.stderr)
        return 2
    if settings.replay is not None:
        problem = recording_problem(settings.replay)
        if problem:
            print(f"bbb-tui: error: {sanitize(problem)}", file=sys.stderr)
            return 2
        BbbApp(replace(settings, data="simulated", record=None)).run()
        return 0
    if args.demo:
        if args.sources["bullmq_prefix"] == "default":  # the user's own queues stay apart
            settings = replace(settings, bullmq_prefix=DEMO_PREFIX)
        return asyncio.run(run_demo(settings, args.rate, configured_redis=args.redis_url))
    BbbApp(asyncio.run(choose_data(settings))).run()
    return 0


def unwritable(path: str) -> str | None:
    """Why ``--record`` cannot append to ``path``, or None."""
    try:
        with open(path, "a", encoding="utf-8"):
            return None
    except OSError as exc:
        return f"--record: cannot write {path}: {exc.strerror or exc}"


def recording_problem(path: str) -> str | None:
    """Why ``path`` cannot be replayed (unreadable, or its first line is no recording)."""
    from bbb_tui.recording import BadRecording, read_recording

    try:
        next(read_recording(path), None)
    except OSError as exc:
        return f"--replay: cannot read {path}: {exc.strerror or exc}"
    except BadRecording as exc:
        return f"--replay: {exc}"
    return None


async def choose_data(settings: TuiSettings) -> TuiSettings:
    """``--data auto``: real data when BullMQ queues exist at the Redis URL, else simulated."""
    if settings.data != "auto":
        return settings
    from bbb_tui.bullmq_data import has_queues

    found = await has_queues(settings.redis_url, settings.bullmq_prefix)
    return replace(settings, data="bullmq" if found else "simulated")


async def run_demo(settings: TuiSettings, rate: float, *, configured_redis: str | None) -> int:
    """Start the demo's Redis, bridge and publisher, run the app on them, stop them all."""
    from bbb_tui.demo import Demo, EmbeddedRedisError  # the whole bridge: only for the demo

    real = settings.data != "simulated"
    if real and not bullmq_installed():
        print(
            "bbb-tui demo: the bullmq package is not installed (pip install 'bbb-tui[bullmq]'): "
            "showing the simulation instead",
            file=sys.stderr,
        )
        real = False
    try:
        async with Demo(
            configured_redis=configured_redis,
            prefix=settings.prefix,
            rate=rate,
            bullmq_prefix=settings.bullmq_prefix if real else None,
        ) as demo:
            app = BbbApp(
                replace(
                    settings,
                    url=with_query_of(demo.url, settings.url),
                    redis_url=demo.redis_url,
                    data="bullmq" if real else "simulated",
                ),
                workload=demo.workload,
            )
            with logs_into(app):
                await app.run_async()
    except EmbeddedRedisError as exc:
        print(f"bbb-tui: error: {sanitize(str(exc))}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"bbb-tui: error: the demo could not start: {exc}", file=sys.stderr)
        return 1
    return 0


def bullmq_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("bullmq") is not None


@contextmanager
def logs_into(app: BbbApp) -> Iterator[None]:
    """While the app owns the terminal, the in-process bridge logs into the event log."""
    from bbb_tui.demo import LogToMonitor

    handler = LogToMonitor(app.monitor.note)
    loggers = {"bridge": logging.INFO, "websockets": logging.WARNING}
    saved = {}
    for name, level in loggers.items():
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate)
        logger.setLevel(level)
        logger.propagate = False  # nothing may reach stderr under the TUI
        logger.addHandler(handler)
    try:
        yield
    finally:
        for name, (level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


if __name__ == "__main__":
    sys.exit(main())
