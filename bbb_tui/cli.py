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

from bbb_tui.app import BbbApp, TuiSettings
from bbb_tui.demo import DEFAULT_DEMO_RATE, Demo, LogToMonitor
from bridge.cli import add_redis_options, add_token, websocket_url_from_env
from bridge.config import (
    DEFAULT_REDIS_URL,
    ConfigError,
    check_redis_url,
    env_flag,
    number_from_env,
    split_redis_urls,
)
from bridge.delivery import parse_batch
from bridge.embedded import EmbeddedRedisError
from bridge.protocol import DEFAULT_WEBSOCKET_URL
from bridge.subscriptions import connection_url


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bbb-tui",
        description="Watch a Better Bull Board bridge live: connection, event log, and the "
        "cache invalidations the web client would do. Keys: 1-4/a fire test events, r "
        "reconnect, p pause, c clear, f filter, ? help, q quit.",
    )
    parser.add_argument(
        "--url",
        default=websocket_url_from_env(environ),
        help="bridge WebSocket URL [env: BBB_WEBSOCKET_URL, NEXT_PUBLIC_WEBSOCKET_URL, "
        f"WEBSOCKET_URL] (default: {DEFAULT_WEBSOCKET_URL})",
    )
    add_token(parser, environ)
    parser.add_argument(
        "--types",
        default=environ.get("BBB_TYPES") or None,
        metavar="T1,T2",
        help="receive only these event types, e.g. job-refresh,queue-refresh (the bridge "
        "filters) [env: BBB_TYPES] (default: all)",
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=None,
        metavar="NAME",
        help="receive queue events only for this queue (repeatable; job events name no queue "
        "and still arrive) [env: BBB_QUEUES, comma-separated] (default: all)",
    )
    parser.set_defaults(queues_env=environ.get("BBB_QUEUES") or None)
    parser.add_argument(
        "--batch",
        type=int,
        default=number_from_env(int, environ, "BBB_BATCH", 0),
        metavar="MS",
        help="ask the bridge to send events in batches every MS milliseconds (fewer, larger "
        "frames: for slow links) [env: BBB_BATCH] (default: 0, each event at once)",
    )
    add_redis_options(parser, environ, purpose="the test-event keys publish to")
    parser.add_argument(
        "--fetch-latency",
        type=float,
        default=number_from_env(float, environ, "BBB_FETCH_LATENCY", 0.15),
        metavar="SECONDS",
        help="simulated refetch time of each query [env: BBB_FETCH_LATENCY] (default: 0.15)",
    )
    parser.add_argument(
        "--log-lines",
        type=int,
        default=number_from_env(int, environ, "BBB_LOG_LINES", 2000),
        metavar="N",
        help="event log lines kept [env: BBB_LOG_LINES] (default: 2000)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=env_flag(environ.get("BBB_READ_ONLY")),
        help="no key publishes anything (1-4 and a are off and hidden) [env: BBB_READ_ONLY=true]",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=env_flag(environ.get("BBB_DEMO")),
        help="start Redis (the configured one if it answers, else a private redis-server), "
        "a bridge and a synthetic publisher, and watch them; quitting stops them all "
        "[env: BBB_DEMO=true]",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=number_from_env(float, environ, "BBB_DEMO_RATE", DEFAULT_DEMO_RATE),
        metavar="N",
        help="with --demo: job changes per second, changed live with + and - "
        f"[env: BBB_DEMO_RATE] (default: {DEFAULT_DEMO_RATE:g})",
    )
    return parser


def settings_from(args: argparse.Namespace) -> TuiSettings:
    try:
        parts = urlsplit(args.url)
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError(f"invalid URL {args.url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not host:
        raise ConfigError(f"--url must be a ws:// or wss:// URL with a host, got {args.url!r}")
    if args.fetch_latency < 0 or args.log_lines < 10:
        raise ConfigError("--fetch-latency must be >= 0 and --log-lines >= 10")
    queues = args.queue or [q for q in (args.queues_env or "").split(",") if q.strip()]
    try:
        url = connection_url(args.url, args.types, queues, args.batch)
        parse_batch(urlsplit(url).query)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return TuiSettings(
        url=url,
        # Test events are published through the first node listed.
        redis_url=check_redis_url(split_redis_urls(args.redis_url or DEFAULT_REDIS_URL)[0]),
        prefix=args.prefix,
        fetch_latency=args.fetch_latency,
        log_lines=args.log_lines,
        token=args.token,
        read_only=args.read_only,
    )


def with_query_of(url: str, other: str) -> str:
    """``url`` with ``other``'s query string (the demo bridge, with the user's filters)."""
    query = urlsplit(other).query
    return urlunsplit(urlsplit(url)._replace(path="/", query=query)) if query else url


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        args = build_parser(env).parse_args(argv)
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"bbb-tui: error: {exc}", file=sys.stderr)
        return 2
    if args.demo:
        return asyncio.run(run_demo(settings, args.rate, configured_redis=args.redis_url))
    BbbApp(settings).run()
    return 0


async def run_demo(settings: TuiSettings, rate: float, *, configured_redis: str | None) -> int:
    """Start the demo's Redis, bridge and publisher, run the app on them, stop them all."""
    try:
        async with Demo(
            configured_redis=configured_redis, prefix=settings.prefix, rate=rate
        ) as demo:
            app = BbbApp(
                replace(
                    settings, url=with_query_of(demo.url, settings.url), redis_url=demo.redis_url
                ),
                workload=demo.workload,
            )
            with logs_into(app):
                await app.run_async()
    except EmbeddedRedisError as exc:
        print(f"bbb-tui: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"bbb-tui: error: the demo could not start: {exc}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def logs_into(app: BbbApp) -> Iterator[None]:
    """While the app owns the terminal, the in-process bridge logs into the event log."""
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
