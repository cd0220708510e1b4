"""``bbb-tui``: parse flags and environment, build the app, run it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from bbb_tui.app import BbbApp, TuiSettings
from bridge.cli import add_redis_options, websocket_url_from_env
from bridge.config import (
    DEFAULT_REDIS_URL,
    ConfigError,
    check_redis_url,
    number_from_env,
)
from bridge.protocol import DEFAULT_WEBSOCKET_URL


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
    return TuiSettings(
        url=args.url,
        redis_url=check_redis_url(args.redis_url or DEFAULT_REDIS_URL),
        prefix=args.prefix,
        fetch_latency=args.fetch_latency,
        log_lines=args.log_lines,
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        args = build_parser(env).parse_args(argv)
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"bbb-tui: error: {exc}", file=sys.stderr)
        return 2
    BbbApp(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
