"""``bbb-bridge``: serve (default), simulate, tail. ``main(argv, environ)`` is the one factory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.auth import DEFAULT_TTL, issue_token, parse_origins, secret_problem
from bridge.config import (
    DEFAULT_MAX_CLIENT_BUFFER,
    DEFAULT_MAX_CLIENT_FRAME,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_REDIS_TIMEOUT,
    DEFAULT_REDIS_URL,
    DEFAULT_REPLAY_AGE,
    DEFAULT_REPLAY_SIZE,
    DEFAULT_SLOW_CLIENT_TIMEOUT,
    ConfigError,
    Settings,
    check_redis_url,
    check_redis_urls,
    env_flag,
    number_from_env,
    redact,
    redis_url_from_env,
    split_redis_urls,
)
from bridge.embedded import EmbeddedRedisError, RedisServer, choose_redis, free_port
from bridge.logformat import LOG_FORMATS, formatter
from bridge.protocol import DEFAULT_PREFIX, DEFAULT_WEBSOCKET_URL, EventType

log = logging.getLogger("bridge")

COMMANDS = ("serve", "simulate", "tail", "token")
LOG_LEVELS = ("debug", "info", "warning", "error")


def websocket_url_from_env(environ: Mapping[str, str]) -> str:
    """The client URL: ``BBB_WEBSOCKET_URL``, then the frontend's, else the default."""
    for name in ("BBB_WEBSOCKET_URL", "NEXT_PUBLIC_WEBSOCKET_URL", "WEBSOCKET_URL"):
        if value := environ.get(name, "").strip():
            return value
    return DEFAULT_WEBSOCKET_URL


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


class _AppendUrl(argparse.Action):
    """``--redis-url A --redis-url B`` -> ``"A,B"``; the first flag replaces the env default."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        given: list[str] = getattr(namespace, "_redis_urls_given", [])
        given.append(str(values))
        namespace._redis_urls_given = given
        setattr(namespace, self.dest, ",".join(given))


def add_redis_options(
    parser: argparse.ArgumentParser, environ: Mapping[str, str], *, purpose: str
) -> None:
    """--redis-url and --prefix, with the original deployment's environment variables.

    ``--redis-url`` defaults to None when the environment configures no Redis, so the
    caller can tell "configured" from "default" (see ``DEFAULT_REDIS_URL``).
    """
    parser.add_argument(
        "--redis-url",
        action=_AppendUrl,
        default=redis_url_from_env(environ),
        metavar="URL",
        help=f"Redis {purpose}; repeat it (or comma-separate REDIS_URL) to list Redis Cluster "
        "nodes, tried in turn [env: REDIS_URL, or REDIS_HOST, REDIS_PORT, "
        f"REDIS_USERNAME, REDIS_PASSWORD, REDIS_USE_TLS] (default: {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--prefix",
        default=environ.get("BBB_EVENTS_PREFIX", DEFAULT_PREFIX),
        help=f"Redis channel prefix [env: BBB_EVENTS_PREFIX] (default: {DEFAULT_PREFIX})",
    )


def add_auth_secret(parser: argparse.ArgumentParser, environ: Mapping[str, str], help: str) -> None:
    parser.add_argument(
        "--auth-secret",
        default=environ.get("BBB_AUTH_SECRET") or None,
        metavar="SECRET",
        help=f"{help} (at least 32 bytes; prefer the environment variable, which "
        "'ps' does not show) [env: BBB_AUTH_SECRET]",
    )


def add_token(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--token",
        default=environ.get("BBB_TOKEN") or None,
        help="token for a bridge that requires one ('bbb-bridge token' makes one), "
        "sent as Authorization: Bearer [env: BBB_TOKEN]",
    )


def add_log_level(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=environ.get("BBB_LOG_LEVEL", "info").lower(),
        help="log detail on stderr [env: BBB_LOG_LEVEL] (default: info)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        type=str.lower,
        default=environ.get("BBB_LOG_FORMAT", "text").lower(),
        help="text, or one JSON object per line for log collectors [env: BBB_LOG_FORMAT] "
        "(default: text)",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bbb-bridge",
        description="Rebroadcast Better Bull Board's Redis events to WebSocket clients.",
        epilog="Without a command, 'serve' runs. 'bbb-bridge COMMAND --help' for each.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the bridge (the default)",
        description="Subscribe to the Redis event channels and broadcast each event "
        "as JSON to every WebSocket client. GET /healthz on the same port for health.",
    )
    serve.add_argument(
        "--host",
        default=environ.get("WEBSOCKET_HOST", "0.0.0.0"),
        help="interface to listen on [env: WEBSOCKET_HOST] (default: 0.0.0.0)",
    )
    serve.add_argument(
        "--port",
        type=_positive,
        default=number_from_env(int, environ, "WEBSOCKET_PORT", 8081),
        help="WebSocket port, 0 for any free one [env: WEBSOCKET_PORT] (default: 8081)",
    )
    add_redis_options(serve, environ, purpose="to subscribe to")
    add_log_level(serve, environ)
    serve.add_argument(
        "--redis-timeout",
        type=float,
        default=number_from_env(float, environ, "BBB_REDIS_TIMEOUT", DEFAULT_REDIS_TIMEOUT),
        metavar="SECONDS",
        help="a Redis that answers nothing (not even a PING) for this long is reconnected to, "
        f"and clients resync [env: BBB_REDIS_TIMEOUT] (default: {DEFAULT_REDIS_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-payload",
        type=_positive,
        default=number_from_env(int, environ, "BBB_MAX_PAYLOAD", DEFAULT_MAX_PAYLOAD),
        metavar="BYTES",
        help="drop (and log) Redis payloads larger than this [env: BBB_MAX_PAYLOAD] "
        f"(default: {DEFAULT_MAX_PAYLOAD})",
    )
    serve.add_argument(
        "--max-client-frame",
        type=_positive,
        default=number_from_env(int, environ, "BBB_MAX_CLIENT_FRAME", DEFAULT_MAX_CLIENT_FRAME),
        metavar="BYTES",
        help="close clients that send larger frames, with 1009 [env: BBB_MAX_CLIENT_FRAME] "
        f"(default: {DEFAULT_MAX_CLIENT_FRAME})",
    )
    serve.add_argument(
        "--max-client-buffer",
        type=_positive,
        default=number_from_env(int, environ, "BBB_MAX_CLIENT_BUFFER", DEFAULT_MAX_CLIENT_BUFFER),
        metavar="BYTES",
        help="a client this far behind gets no more events until it catches up, then one "
        f"'resync' [env: BBB_MAX_CLIENT_BUFFER] (default: {DEFAULT_MAX_CLIENT_BUFFER})",
    )
    serve.add_argument(
        "--slow-client-timeout",
        type=float,
        default=number_from_env(
            float, environ, "BBB_SLOW_CLIENT_TIMEOUT", DEFAULT_SLOW_CLIENT_TIMEOUT
        ),
        metavar="SECONDS",
        help="close (1013) a client that stays that far behind this long "
        f"[env: BBB_SLOW_CLIENT_TIMEOUT] (default: {DEFAULT_SLOW_CLIENT_TIMEOUT:g})",
    )
    serve.add_argument(
        "--replay-size",
        type=_positive,
        default=number_from_env(int, environ, "BBB_REPLAY_SIZE", DEFAULT_REPLAY_SIZE),
        metavar="EVENTS",
        help="keep this many recent events for clients that reconnect with ?since=&epoch= "
        f"(0: none) [env: BBB_REPLAY_SIZE] (default: {DEFAULT_REPLAY_SIZE})",
    )
    serve.add_argument(
        "--replay-age",
        type=float,
        default=number_from_env(float, environ, "BBB_REPLAY_AGE", DEFAULT_REPLAY_AGE),
        metavar="SECONDS",
        help="...but none older than this; a client that missed more gets a 'resync' "
        f"[env: BBB_REPLAY_AGE] (default: {DEFAULT_REPLAY_AGE:g})",
    )
    add_auth_secret(
        serve, environ, "require clients to present a token signed with this (HTTP 401 otherwise)"
    )
    serve.add_argument(
        "--allowed-origins",
        default=environ.get("BBB_ALLOWED_ORIGINS") or None,
        metavar="ORIGINS",
        help="comma-separated origins whose browser pages may connect, e.g. "
        "https://bbb.example.com; others get HTTP 403 [env: BBB_ALLOWED_ORIGINS] "
        "(default: any)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=number_from_env(int, environ, "BBB_MAX_CONNECTIONS", 0),
        metavar="N",
        help="refuse connections past N open ones with HTTP 503 [env: BBB_MAX_CONNECTIONS] "
        "(default: 0, no limit)",
    )
    serve.add_argument(
        "--max-client-rate",
        type=float,
        default=number_from_env(float, environ, "BBB_MAX_CLIENT_RATE", 0.0),
        metavar="FRAMES",
        help="close (1008) clients that send more frames per second than this, over a "
        "burst of twice as many [env: BBB_MAX_CLIENT_RATE] (default: 0, no limit)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=number_from_env(int, environ, "BBB_WORKERS", 1),
        metavar="N",
        help="run N bridge processes on the port (SO_REUSEPORT), for hosts with N cores; "
        "each has its own Redis subscription and clients [env: BBB_WORKERS] (default: 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=env_flag(environ.get("BBB_COMPRESSION")),
        help="offer permessage-deflate to clients that ask for it (browsers do); worth it "
        "with ?batch= (see the README) [env: BBB_COMPRESSION=true] (default: off)",
    )
    serve.add_argument(
        "--embedded-redis",
        action=argparse.BooleanOptionalAction,
        default=env_flag(environ.get("BBB_EMBEDDED_REDIS")),
        help="if no Redis is configured and none answers on localhost:6379, start a private "
        "redis-server (from PATH or the 'embedded' extra) [env: BBB_EMBEDDED_REDIS=true]",
    )

    simulate = commands.add_parser(
        "simulate",
        help="publish test events on Redis",
        description="Publish the four test events (test-job-123, test-queue, "
        "test-scheduler-key, test-job-456), or with --count a paced load.",
    )
    add_redis_options(simulate, environ, purpose="to publish to")
    add_log_level(simulate, environ)
    simulate.add_argument(
        "--count", type=_positive, default=0, help="publish N events (or N bursts) instead"
    )
    simulate.add_argument(
        "--rate", type=float, default=0.0, help="events (or bursts) per second; 0 = max (default)"
    )
    simulate.add_argument(
        "--type",
        choices=[t.value for t in EventType],
        default=None,
        help="event type for --count (default: cycle the four seed types)",
    )
    simulate.add_argument(
        "--workload",
        action="store_true",
        help="publish a realistic Better Bull Board workload (queues, jobs moving through "
        "their states, logs, schedulers, bursts) until Ctrl+C; --rate sets job changes/s "
        "(default 20), --count the seconds to run (default: forever)",
    )
    simulate.add_argument(
        "--burst",
        type=_positive,
        default=0,
        metavar="SIZE",
        help="each unit is a real-publisher burst: job-refresh '1' + SIZE single-job-refresh",
    )

    tail = commands.add_parser(
        "tail",
        help="print every message a bridge sends, one JSON line each",
        description="Connect as a WebSocket client and print each message as one JSON line "
        "on stdout (status on stderr). Reconnects with backoff.",
    )
    tail.add_argument(
        "--url",
        default=websocket_url_from_env(environ),
        help="bridge URL [env: BBB_WEBSOCKET_URL, NEXT_PUBLIC_WEBSOCKET_URL, WEBSOCKET_URL] "
        f"(default: {DEFAULT_WEBSOCKET_URL})",
    )
    tail.add_argument(
        "--count", type=_positive, default=0, help="exit after N messages (default: never)"
    )
    add_token(tail, environ)
    add_log_level(tail, environ)

    token = commands.add_parser(
        "token",
        help="print a token for a bridge run with --auth-secret",
        description="Sign a token with the bridge's secret and print it on the last line of "
        "stdout. Clients pass it as ?token=... or Authorization: Bearer ... "
        "(bbb-tui --token / BBB_TOKEN).",
    )
    add_auth_secret(token, environ, "the bridge's secret")
    token.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help=f"valid for this long; 0 for no expiry (default: {DEFAULT_TTL:g})",
    )
    token.add_argument("--sub", default=None, help="who the token is for (its 'sub' claim)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Turn parsed ``serve`` arguments into :class:`Settings` (raises ConfigError)."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port must be 0-65535, got {args.port}")
    if not args.prefix:
        raise ConfigError("the channel prefix must not be empty")
    if args.auth_secret is not None and (problem := secret_problem(args.auth_secret)):
        raise ConfigError(problem)
    origins = parse_origins(args.allowed_origins) if args.allowed_origins else None
    if args.allowed_origins is not None and not origins:
        raise ConfigError("--allowed-origins lists no origin")
    return Settings(
        host=args.host,
        port=args.port,
        redis_url=check_redis_urls(args.redis_url or DEFAULT_REDIS_URL),
        redis_configured=args.redis_url is not None,
        prefix=args.prefix,
        max_payload=args.max_payload,
        max_client_frame=max(args.max_client_frame, 125),  # a control frame must fit
        max_client_buffer=max(args.max_client_buffer, 4096),
        slow_client_timeout=max(args.slow_client_timeout, 0.1),
        replay_size=args.replay_size,
        redis_timeout=max(args.redis_timeout, 0.2),
        replay_age=max(args.replay_age, 0.0),
        auth_secret=args.auth_secret,
        allowed_origins=origins,
        max_connections=args.max_connections,
        max_client_rate=max(args.max_client_rate, 0.0),
        embedded_redis=args.embedded_redis,
        workers=max(args.workers, 1),
        compression=args.compression,
        reuse_port=args.reuse_port,
        log_level=args.log_level.upper(),
    )


def configure_logging(level: str, kind: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # websockets logs every handshake at INFO; ours are the ones that matter.
    websockets_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    logging.getLogger("websockets").setLevel(websockets_level)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``bbb-bridge``; return the exit code (0 ok, 1 runtime error, 2 usage error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    if not args_list or args_list[0] not in (*COMMANDS, "-h", "--help"):
        args_list.insert(0, "serve")
    try:
        parser = build_parser(env)
    except ConfigError as exc:
        print(f"bbb-bridge: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(args_list)
    if args.command == "token":
        return _token(args)
    if args.log_level not in LOG_LEVELS:  # a bad BBB_LOG_LEVEL skips argparse's choices check
        parser.error(
            f"BBB_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}"
        )
    if args.log_format not in LOG_FORMATS:
        parser.error(
            f"BBB_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {args.log_format!r}"
        )
    configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "tail":
            from bridge.tail import tail

            return asyncio.run(tail(args.url, count=args.count, token=args.token))
        return _serve(settings_from(args), args_list)
    except ConfigError as exc:
        print(f"bbb-bridge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _token(args: argparse.Namespace) -> int:
    """Print a token signed with the secret; details on stderr, the token alone on stdout."""
    if not args.auth_secret:
        print("bbb-bridge: error: token needs --auth-secret or BBB_AUTH_SECRET", file=sys.stderr)
        return 2
    if problem := secret_problem(args.auth_secret):
        print(f"bbb-bridge: error: {problem}", file=sys.stderr)
        return 2
    ttl = args.ttl if args.ttl > 0 else None
    expiry = f"expires in {args.ttl:g}s" if ttl else "never expires"
    print(f"token for {args.sub or 'any client'}; {expiry}", file=sys.stderr)
    print(issue_token(args.auth_secret, ttl=ttl, subject=args.sub))
    return 0


def _serve(settings: Settings, argv: Sequence[str]) -> int:
    embedded: RedisServer | None = None
    try:
        if settings.embedded_redis:
            # A configured Redis is used even while down: the bridge retries until it is up.
            choice = choose_redis(
                settings.redis_url if settings.redis_configured else None,
                use_configured_even_if_down=True,
            )
            embedded = choice.server
            settings = dataclasses.replace(settings, redis_url=choice.url)
            log.info("Redis: %s", choice.description)
        if settings.workers > 1:
            return asyncio.run(_serve_workers(settings, argv, embedded is not None))
        return asyncio.run(_serve_async(settings))
    except EmbeddedRedisError as exc:
        print(f"bbb-bridge: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve_workers(settings: Settings, argv: Sequence[str], embedded: bool) -> int:
    """The parent of ``--workers N``: one port for all (picked now if 0), one Redis."""
    from bridge.workers import run_workers

    port = settings.port or free_port(settings.host)
    overrides = ["--port", str(port), "--reuse-port"]
    if embedded:  # the workers share the Redis this parent started
        overrides += ["--redis-url", settings.redis_url, "--no-embedded-redis"]
    log.info("WebSocket port %d: starting %d workers", port, settings.workers)
    return await run_workers(argv, settings.workers, overrides)


async def _serve_async(settings: Settings) -> int:
    from bridge.server import Bridge

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
    await bridge.run_until_signal()
    log.info("Stopped")
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from bridge.simulate import LoadPlan, publish_load, publish_seed, run_workload
    from bridge.workload import Workload

    url = check_redis_url(split_redis_urls(args.redis_url or DEFAULT_REDIS_URL)[0])
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        if args.workload:
            workload = Workload(rate=args.rate or 20.0)
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
            rate=max(args.rate, 0.0),
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
        print(f"bbb-bridge: error: cannot publish to {redact(url)}: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()


if __name__ == "__main__":
    sys.exit(main())
