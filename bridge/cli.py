"""``bbb-bridge``: serve (default), simulate, tail. ``main(argv, environ)`` is the one factory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import resource
import sys
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.checks import redact, split_redis_urls
from bridge.config import (
    DEFAULT_REDIS_URL,
    LOG_FORMAT,
    LOG_LEVEL,
    PREFIX,
    REDIS_URL,
    SERVE_OPTIONS,
    TOKEN,
    TOKEN_FILE,
    WEBSOCKET_URL,
    ConfigError,
    Settings,
    auth_secret_option,
    settings_from,
)
from bridge.core.protocol import EventType
from bridge.core.sanitize import sanitize
from bridge.core.workload import MAX_RATE, MIN_RATE
from bridge.ops.logformat import formatter
from bridge.options import Command, OneLineParser, Option, boolean, choice, number, text, whole
from bridge.serving.auth import DEFAULT_TTL, issue_token
from bridge.tools.embedded import EmbeddedRedisError, RedisServer, choose_redis, free_port

log = logging.getLogger("bridge")

YEAR = 365 * 24 * 3600.0


def ttl(raw: str) -> float:
    """0 (no expiry, written as such), or from 1 s to 10 years: never a value that rounds
    to "no expiry" by accident."""
    value = number(0, 10 * YEAR)(raw)
    if value == 0 and raw.strip() not in ("0", "0.0"):
        raise ValueError("must be 0 (no expiry) or at least 1 second")
    if 0 < value < 1:
        raise ValueError("must be 0 (no expiry) or at least 1 second")
    return value


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "serve",
            "run the bridge (the default)",
            SERVE_OPTIONS,
            "Subscribe to the Redis event channels and broadcast each event as JSON to every "
            "WebSocket client. GET /healthz, /metrics and / (a live page) on the same port.",
        ),
        Command(
            "simulate",
            "publish test events on Redis",
            (
                REDIS_URL,
                PREFIX,
                Option("--count", "publish N events (or N bursts) instead", whole(0, 10**9), 0),
                Option(
                    "--rate",
                    "events (or bursts) per second; 0 = as fast as possible; with --workload, "
                    "job changes per second (20 when 0)",
                    number(0, 10_000_000),
                    0.0,
                ),
                Option(
                    "--type",
                    "event type for --count",
                    choice(*(t.value for t in EventType)),
                    default_text="the four seed types in turn",
                ),
                Option(
                    "--workload",
                    "publish a realistic Better Bull Board workload (queues, jobs moving "
                    "through their states, logs, schedulers, bursts) until Ctrl+C; --count "
                    "sets the seconds to run",
                    boolean,
                    False,
                    switch=True,
                ),
                Option(
                    "--burst",
                    "each unit is a real-publisher burst: job-refresh '1' + SIZE "
                    "single-job-refresh",
                    whole(0, 100_000),
                    0,
                    metavar="SIZE",
                ),
                LOG_LEVEL,
                LOG_FORMAT,
            ),
            "Publish the four test events (test-job-123, test-queue, test-scheduler-key, "
            "test-job-456), or with --count a paced load.",
        ),
        Command(
            "tail",
            "print every message a bridge sends, one JSON line each",
            (
                WEBSOCKET_URL,
                Option("--count", "exit after N messages (0: never)", whole(0, 10**12), 0),
                TOKEN,
                TOKEN_FILE,
                LOG_LEVEL,
                LOG_FORMAT,
            ),
            "Connect as a WebSocket client and print each message as one JSON line on stdout "
            "(status on stderr). Reconnects with backoff, and resumes where it left off.",
        ),
        Command(
            "token",
            "print a token for a bridge run with --auth-secret",
            (
                auth_secret_option("the bridge's secret"),
                Option(
                    "--ttl",
                    "valid for this many seconds (at least 1); 0 for no expiry",
                    ttl,
                    DEFAULT_TTL,
                    metavar="SECONDS",
                    bad=("0.5", "1e-400", "-0", "-5"),
                ),
                Option("--sub", "who the token is for (its `sub` claim)", text),
            ),
            "Sign a token with the bridge's secret and print it on the last line of stdout. "
            "Clients pass it as ?token=... or Authorization: Bearer ... "
            "(bbb-tui --token / BBB_TOKEN).",
        ),
    )
}


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """The command's settled options (flags, then environment, then defaults), checked.

    Without a command, ``serve``. Raises ConfigError with one line for any mistake.
    """
    args_list = list(argv)
    if not args_list or args_list[0] not in (*COMMANDS, "-h", "--help"):
        args_list.insert(0, "serve")
    parser = OneLineParser(
        prog="bbb-bridge",
        description="Rebroadcast Better Bull Board's Redis events to WebSocket clients.",
        epilog="Without a command, 'serve' runs. 'bbb-bridge COMMAND --help' for each.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        sub = commands.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.add_to(sub)
    args = parser.parse_args(args_list)
    return COMMANDS[args.command].settle(args, environ)


def configure_logging(level: str, kind: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # websockets logs every handshake at INFO, and at DEBUG every frame, whatever a client
    # puts in it (its token, even): ours are the lines that matter, at every level.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``bbb-bridge``; return the exit code (0 ok, 1 runtime error, 2 usage error)."""
    env = os.environ if environ is None else environ
    try:
        args = parse(sys.argv[1:] if argv is None else argv, env)
        if args.command == "token":
            return _token(args)
        configure_logging(args.log_level, args.log_format)
        if args.command == "simulate":
            if args.workload and args.rate and not MIN_RATE <= args.rate <= MAX_RATE:
                raise ConfigError(
                    f"--rate: with --workload, must be a number from {MIN_RATE:g} to "
                    f"{MAX_RATE:g} job changes per second"
                )
            return asyncio.run(_simulate(args))
        if args.command == "tail":
            from bridge.tools.tail import tail

            return asyncio.run(
                tail(args.url, count=args.count, token=args.token, token_file=args.token_file)
            )
        return _serve(settings_from(args), sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"bbb-bridge: error: {sanitize(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _token(args: argparse.Namespace) -> int:
    """Print a token signed with the secret; details on stderr, the token alone on stdout."""
    if not args.auth_secret:
        raise ConfigError("token needs --auth-secret or BBB_AUTH_SECRET")
    ttl = args.ttl if args.ttl > 0 else None
    expiry = f"expires in {args.ttl:g}s" if ttl else "never expires"
    print(f"token for {sanitize(args.sub or 'any client')}; {expiry}", file=sys.stderr)
    print(issue_token(args.auth_secret, ttl=ttl, subject=args.sub))
    return 0


def _serve(settings: Settings, argv: Sequence[str]) -> int:
    if settings.source == "pubsub" and settings.queues:
        print(
            "bbb-bridge: error: --queues names BullMQ queues to read: it needs --source "
            "bullmq or both",
            file=sys.stderr,
        )
        return 2
    if settings.source != "pubsub" and len(split_redis_urls(settings.redis_url)) > 1:
        print(
            "bbb-bridge: error: --source bullmq reads one Redis, not a cluster's nodes (give "
            "one --redis-url, or use --source pubsub)",
            file=sys.stderr,
        )
        return 2
    embedded: RedisServer | None = None
    try:
        if settings.embedded_redis:
            # A configured Redis is used even while down: the bridge retries until it is up.
            picked = choose_redis(
                settings.redis_url if settings.redis_configured else None,
                use_configured_even_if_down=True,
            )
            embedded = picked.server
            settings = dataclasses.replace(settings, redis_url=picked.url)
            log.info("Redis: %s", picked.description)
        if settings.workers > 1:
            return asyncio.run(_serve_workers(settings, argv, embedded is not None))
        return asyncio.run(_serve_async(settings))
    except EmbeddedRedisError as exc:
        print(f"bbb-bridge: error: {sanitize(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve_workers(settings: Settings, argv: Sequence[str], embedded: bool) -> int:
    """The parent of ``--workers N``: one port for all (picked now if 0), one Redis."""
    from bridge.ops.workers import run_workers

    port = settings.port or free_port(settings.host)
    overrides = ["--port", str(port), "--reuse-port"]
    if embedded:  # the workers share the Redis this parent started
        overrides += ["--redis-url", settings.redis_url, "--no-embedded-redis"]
    log.info("WebSocket port %d: starting %d workers", port, settings.workers)
    return await run_workers(argv, settings.workers, overrides)


def raise_open_files_limit() -> None:
    """Allow as many open files as the hard limit does (a connection is one): the soft
    limit is often 1,024, far below what a bridge serves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("Open files limit raised from %d to %d", soft, target)


async def _serve_async(settings: Settings) -> int:
    from bridge.ops.workers import say_ready
    from bridge.serving.server import Bridge

    raise_open_files_limit()
    bridge = Bridge(settings)
    try:
        await bridge.start()
    except OSError as exc:
        await bridge.stop()
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            why = f"port {settings.port} is already in use (pick another: --port/WEBSOCKET_PORT)"
        else:
            why = exc.strerror or str(exc)
        print(f"bbb-bridge: error: cannot listen on {where}: {why}", file=sys.stderr)
        return 1
    say_ready()  # under --workers: the parent now knows this one could start
    await bridge.run_until_signal()
    log.info("Stopped")
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from bridge.core.workload import DEFAULT_RATE, Workload
    from bridge.tools.simulate import LoadPlan, publish_load, publish_seed, run_workload

    url = split_redis_urls(args.redis_url or DEFAULT_REDIS_URL)[0]  # checked by parse()
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        if args.workload:
            workload = Workload(rate=args.rate or DEFAULT_RATE)
            print(
                f"publishing a synthetic workload ({workload.rate:g} job changes/s) "
                f"to {redact(url)}; Ctrl+C stops",
                file=sys.stderr,
            )
            sent = await run_workload(client, args.prefix, workload, seconds=float(args.count))
            print(f"published {sent} events")
            return 0
        if not args.count:
            for channel, payload, receivers in await publish_seed(client, args.prefix):
                print(f"PUBLISH {channel} {payload} -> {receivers} subscriber(s)")
            return 0
        plan = LoadPlan(
            count=args.count,
            rate=args.rate,
            type=EventType(args.type) if args.type else None,
            burst=args.burst,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = await publish_load(client, args.prefix, plan)
        elapsed = max(loop.time() - started, 1e-9)
        print(
            f"published {sent} events in {elapsed:.2f}s ({sent / elapsed:,.0f}/s) to {redact(url)}"
        )
        return 0
    except (RedisError, OSError) as exc:
        print(
            f"bbb-bridge: error: cannot publish to {redact(url)}: {sanitize(str(exc))}",
            file=sys.stderr,
        )
        return 1
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()


if __name__ == "__main__":
    sys.exit(main())
