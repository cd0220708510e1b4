"""Settings, and the table of options that makes them (see :mod:`bridge.options`).

Every flag has an environment variable; flags win. Redis comes from ``--redis-url``,
else ``REDIS_URL``, else the original deployment's ``REDIS_HOST``/``REDIS_PORT``/
``REDIS_USERNAME``/``REDIS_PASSWORD``/``REDIS_USE_TLS``, else ``redis://localhost:6379``.

The options both programs share (Redis, prefix, bridge URL, token, logs) are declared
here, once; ``bbb-tui`` imports them from here, never from the bridge's CLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from bridge.checks import (
    UNSAFE,
    check_redis_urls,
    check_token,
    check_websocket_url,
    nonempty,
    parse_origins,
    secret_problem,
)
from bridge.core.protocol import DEFAULT_PREFIX, DEFAULT_WEBSOCKET_PORT, DEFAULT_WEBSOCKET_URL
from bridge.core.streams import (
    DEFAULT_BULLMQ_PREFIX,
    DEFAULT_RESCAN,
    MAX_QUEUES_READ,
)
from bridge.core.subscriptions import MAX_QUEUE_NAME
from bridge.options import ConfigError, Option, boolean, choice, number, whole

__all__ = ["ConfigError", "Settings"]

DEFAULT_REDIS_URL = "redis://localhost:6379"
MIB = 1024 * 1024
DEFAULT_MAX_PAYLOAD = 64 * 1024
DEFAULT_MAX_CLIENT_FRAME = 4096
# Far above one burst read from Redis (256 KiB of frames at most), which a healthy
# client may briefly hold in the buffer: only a client that stopped reading gets there.
DEFAULT_MAX_CLIENT_BUFFER = 4 * MIB
DEFAULT_SLOW_CLIENT_TIMEOUT = 30.0
DEFAULT_REDIS_TIMEOUT = 3.0
# A few seconds of a heavy burst, or minutes of ordinary traffic (and 32 MiB at most,
# see bridge.core.journal).
DEFAULT_REPLAY_SIZE = 10_000
DEFAULT_REPLAY_AGE = 300.0
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: Where the bridge's events come from (``--source``).
SOURCES = ("pubsub", "bullmq", "both")


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``bbb-bridge serve`` needs to run (the defaults are the options' defaults)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_WEBSOCKET_PORT
    #: One URL, or several comma-separated (Redis Cluster nodes, tried in turn).
    redis_url: str = DEFAULT_REDIS_URL
    #: Whether the Redis URL came from a flag or the environment (not the default).
    redis_configured: bool = False
    prefix: str = DEFAULT_PREFIX
    #: pubsub (the channels under ``prefix``), bullmq (BullMQ's streams) or both.
    source: str = "pubsub"
    bullmq_prefix: str = DEFAULT_BULLMQ_PREFIX
    #: BullMQ queues to read (empty: every queue found under ``bullmq_prefix``).
    queues: tuple[str, ...] = ()
    #: Seconds between looks for new (and gone) BullMQ queues.
    rescan: float = DEFAULT_RESCAN
    #: Larger Redis payloads are dropped (and logged): one event must not cost MiBs per client.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Larger client frames close the connection with 1009.
    max_client_frame: int = DEFAULT_MAX_CLIENT_FRAME
    #: A client with more than this many bytes waiting to be sent gets no more events
    #: until it catches up (then one ``resync``), and is closed (1013) if it does not
    #: within ``slow_client_timeout`` seconds.
    max_client_buffer: int = DEFAULT_MAX_CLIENT_BUFFER
    slow_client_timeout: float = DEFAULT_SLOW_CLIENT_TIMEOUT
    #: A Redis silent this long (PINGed halfway) is reconnected to, and clients resync.
    redis_timeout: float = DEFAULT_REDIS_TIMEOUT
    #: Events kept for clients that reconnect with ``?since=&epoch=``: at most this many,
    #: none older than ``replay_age`` seconds (0: keep none; such clients get a resync).
    replay_size: int = DEFAULT_REPLAY_SIZE
    replay_age: float = DEFAULT_REPLAY_AGE
    #: With a secret, clients must present a token it signed (else HTTP 401).
    auth_secret: str | None = None
    #: With a set, browser pages from other origins are refused (HTTP 403).
    allowed_origins: frozenset[str] | None = None
    #: Past this many open connections, new ones get HTTP 503 (0: no limit).
    max_connections: int = 0
    #: Clients sending more frames per second than this (over a burst of twice that)
    #: are closed with 1008 (0: no limit).
    max_client_rate: float = 0.0
    #: Start a private redis-server when none is configured and none answers locally.
    embedded_redis: bool = False
    #: Offer permessage-deflate to clients that ask for it (each message compressed once).
    compression: bool = False
    #: Processes serving the port (SO_REUSEPORT); each is a whole bridge.
    workers: int = 1
    reuse_port: bool = False
    log_level: str = "INFO"


# -- Redis URLs -------------------------------------------------------------------


REDIS_VARIABLES = (
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_USE_TLS",
)


def redis_url_from_env(environ: Mapping[str, str]) -> str | None:
    """The Redis URL the environment configures, or None if it configures none.

    Raises ConfigError (naming the variable) for a ``REDIS_PORT`` or ``REDIS_USE_TLS``
    that cannot work.
    """
    found = redis_env(environ)
    return None if found is None else found[1]


def redis_env(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(the variable it came from, the URL): ``REDIS_URL``, else the ``REDIS_*`` parts."""
    for name in REDIS_VARIABLES:
        raw = environ.get(name)
        if raw and not raw.strip():
            raise ConfigError(f"{name}: is blank (unset it, or give it a value)")
    if url := environ.get("REDIS_URL", "").strip():
        return "REDIS_URL", url
    host = environ.get("REDIS_HOST", "").strip()
    port = environ.get("REDIS_PORT", "").strip()
    username = environ.get("REDIS_USERNAME", "")
    password = environ.get("REDIS_PASSWORD", "")
    tls_raw = environ.get("REDIS_USE_TLS", "")
    if not (host or port or username or password or tls_raw.strip()):
        return None
    if host and (UNSAFE.search(host) or any(c in host for c in "@/?#")):
        raise ConfigError(f"REDIS_HOST: must be a host name or address, got {host[:80]!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    if port:  # checked here, to name the variable in the error
        port = str(Option("--redis-port", "", whole(1, 65535)).value(port, "REDIS_PORT"))
    tls = Option("--redis-use-tls", "", boolean).value(tls_raw, "REDIS_USE_TLS")
    auth = ""
    if username or password:
        auth = quote(username, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    scheme = "rediss" if tls else "redis"
    return "REDIS_HOST/REDIS_PORT/...", f"{scheme}://{auth}{host or 'localhost'}:{port or '6379'}"


# -- the options both programs share ------------------------------------------------

REDIS_URL = Option(
    "--redis-url",
    "Redis to subscribe or publish to (`redis://`, `rediss://`, `unix://`); repeat it, or "
    "comma-separate `REDIS_URL`, to list Redis Cluster nodes, tried in turn. `rediss://` "
    "honours `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs` and "
    "`ssl_check_hostname`",
    check_redis_urls,
    None,
    metavar="URL",
    repeat=True,
    secret=True,  # may hold a password: errors show it redacted
    default_text=DEFAULT_REDIS_URL,
    env_text="REDIS_URL, or REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD, REDIS_USE_TLS",
    env_reader=redis_env,
    bad=(  # with passwords: an error must show them redacted
        "http://u:hunter2@localhost",
        "redis://:hunter2@h:99999",
        "redis://:hunter2@h:1?socket_timeout=x",
        "rediss://:hunter2@h:1?ssl_ca_certs=/no/such/file",
        "rediss://:hunter2@h:1?ssl_cert_reqs=sometimes",
    ),
)
PREFIX = Option(
    "--prefix",
    "Redis channel prefix",
    nonempty,
    DEFAULT_PREFIX,
    env=("BBB_EVENTS_PREFIX",),
    bad=("",),
)
BULLMQ_PREFIX = Option(
    "--bullmq-prefix",
    "the prefix of BullMQ's keys (BullMQ's `prefix` option)",
    nonempty,
    DEFAULT_BULLMQ_PREFIX,
    env=("BBB_BULLMQ_PREFIX",),
    metavar="PREFIX",
    bad=("",),
)


def queue_names(raw: list[str]) -> tuple[str, ...]:
    """Queue names, each of 1 to MAX_QUEUE_NAME bytes; at most MAX_QUEUES_READ."""
    names = tuple(dict.fromkeys(raw))
    if not names:
        raise ValueError("must name at least one queue")
    if len(names) > MAX_QUEUES_READ:
        raise ValueError(f"at most {MAX_QUEUES_READ:,} queues")
    for name in names:
        if len(name.encode()) > MAX_QUEUE_NAME:
            raise ValueError(
                f"a queue name is {MAX_QUEUE_NAME} bytes at most, got {name[:20]!r}..."
            )
    return names


queue_names.bad = ("x" * 300, ",,,")  # type: ignore[attr-defined]


WEBSOCKET_URL = Option(
    "--url",
    "the bridge to connect to",
    check_websocket_url,
    DEFAULT_WEBSOCKET_URL,
    env=("BBB_WEBSOCKET_URL", "NEXT_PUBLIC_WEBSOCKET_URL", "WEBSOCKET_URL"),
    env_text="BBB_WEBSOCKET_URL, then NEXT_PUBLIC_WEBSOCKET_URL, then WEBSOCKET_URL",
    bad=("http://localhost:8081", "ws://", "ws://h:99999", "ws://[::1"),
)
TOKEN = Option(
    "--token",
    "the token for a bridge run with `--auth-secret` (`bbb-bridge token` makes one), sent as "
    "`Authorization: Bearer`",
    check_token,
    env=("BBB_TOKEN",),
    secret=True,
    bad=("", "two words", "caf\u00e9", "line\nbreak"),
)
TOKEN_FILE = Option(
    "--token-file",
    "a file holding that token, read again before every connection attempt (for rotated tokens)",
    nonempty,
    env=("BBB_TOKEN_FILE",),
    metavar="PATH",
    bad=("",),
)
LOG_LEVEL = Option(
    "--log-level",
    "log detail on stderr: " + ", ".join(LOG_LEVELS),
    choice(*LOG_LEVELS),
    "info",
    env=("BBB_LOG_LEVEL",),
)
LOG_FORMAT = Option(
    "--log-format",
    "`text`, or `json`: one object per line (`time`, `level`, `logger`, `message`, `worker`)",
    choice(*LOG_FORMATS),
    "text",
    env=("BBB_LOG_FORMAT",),
)


def auth_secret_option(help: str) -> Option:
    def parse(raw: str) -> str:
        if problem := secret_problem(raw):
            raise ValueError(problem.removeprefix("the auth secret "))
        return raw

    return Option(
        "--auth-secret",
        help + "; HS256, at least 32 bytes; prefer the variable, which `ps` does not show",
        parse,
        env=("BBB_AUTH_SECRET",),
        secret=True,
        metavar="SECRET",
        default_text="off",
        bad=("too-short",),
    )


def origins(raw: str) -> frozenset[str]:
    """Origins as browsers send them: ``scheme://host[:port]``, nothing more."""
    found = parse_origins(raw)
    if not found:
        raise ValueError("lists no origin")
    for origin in found:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ValueError(
                f"{origin[:80]!r} is not an origin a browser sends (https://host[:port])"
            )
    return found


SERVE_OPTIONS: tuple[Option, ...] = (
    Option(
        "--host", "interface to listen on", nonempty, "0.0.0.0", env=("WEBSOCKET_HOST",), bad=("",)
    ),
    Option(
        "--port",
        "WebSocket (and `/healthz`, `/metrics`, the page) port; `0` picks a free one",
        whole(0, 65535),
        DEFAULT_WEBSOCKET_PORT,
        env=("WEBSOCKET_PORT",),
    ),
    REDIS_URL,
    PREFIX,
    Option(
        "--source",
        "where events come from: `pubsub` (the channels under `--prefix`, as the original), "
        "`bullmq` (every BullMQ queue's own event stream) or `both`",
        choice(*SOURCES),
        "pubsub",
        env=("BBB_SOURCE",),
    ),
    BULLMQ_PREFIX,
    Option(
        "--queues",
        "with `--source bullmq` or `both`: read only these queues (repeat, or comma-separate)",
        queue_names,
        (),
        env=("BBB_BULLMQ_QUEUES",),
        metavar="NAMES",
        default_text="all, found every 10 s",
        repeat=True,
    ),
    Option(
        "--max-payload",
        "Redis payloads larger than this many bytes are dropped and logged",
        whole(1, 512 * MIB),
        DEFAULT_MAX_PAYLOAD,
        env=("BBB_MAX_PAYLOAD",),
        metavar="BYTES",
    ),
    Option(
        "--max-client-frame",
        "a client frame larger than this many bytes closes that client with 1009 (at least "
        "125: a control frame must fit)",
        whole(125, 16 * MIB),
        DEFAULT_MAX_CLIENT_FRAME,
        env=("BBB_MAX_CLIENT_FRAME",),
        metavar="BYTES",
    ),
    Option(
        "--max-client-buffer",
        "a client this many bytes behind gets no more events until it catches up, then one "
        "`resync`",
        whole(4096, 1024 * MIB),
        DEFAULT_MAX_CLIENT_BUFFER,
        env=("BBB_MAX_CLIENT_BUFFER",),
        metavar="BYTES",
    ),
    Option(
        "--slow-client-timeout",
        "a client that stays that far behind this many seconds is closed with 1013",
        number(0.1, 86400),
        DEFAULT_SLOW_CLIENT_TIMEOUT,
        env=("BBB_SLOW_CLIENT_TIMEOUT",),
        metavar="SECONDS",
    ),
    Option(
        "--replay-size",
        "events kept for clients that reconnect with `?since=&epoch=` (`0`: none), and never "
        "more than 32 MiB of them",
        whole(0, 10_000_000),
        DEFAULT_REPLAY_SIZE,
        env=("BBB_REPLAY_SIZE",),
        metavar="EVENTS",
    ),
    Option(
        "--replay-age",
        "...none older than this many seconds",
        number(0, 86400),
        DEFAULT_REPLAY_AGE,
        env=("BBB_REPLAY_AGE",),
        metavar="SECONDS",
    ),
    Option(
        "--redis-timeout",
        "a Redis silent this long (PINGed halfway), or this slow to connect, is dropped and"
        " tried again (clients get a resync)",
        number(0.2, 3600),
        DEFAULT_REDIS_TIMEOUT,
        env=("BBB_REDIS_TIMEOUT",),
        metavar="SECONDS",
    ),
    auth_secret_option("require a token signed with this secret (others get HTTP 401)"),
    Option(
        "--allowed-origins",
        "comma-separated origins whose browser pages may connect (others: HTTP 403)",
        origins,
        env=("BBB_ALLOWED_ORIGINS",),
        metavar="ORIGINS",
        default_text="any",
        bad=(",", "a.com", "*", "file://x", "https://a.com:99999", "https://a.com/path"),
    ),
    Option(
        "--max-connections",
        "past this many open connections, new ones get HTTP 503",
        whole(0, 10_000_000),
        0,
        env=("BBB_MAX_CONNECTIONS",),
        metavar="N",
        default_text="0 (no limit)",
    ),
    Option(
        "--max-client-rate",
        "a client sending more frames per second (over a burst of twice that) is closed with 1008",
        number(0, 1_000_000),
        0.0,
        env=("BBB_MAX_CLIENT_RATE",),
        metavar="FRAMES",
        default_text="0 (no limit)",
    ),
    Option(
        "--workers",
        "processes serving the port (SO_REUSEPORT), each a whole bridge",
        whole(1, 256),
        1,
        env=("BBB_WORKERS",),
        metavar="N",
    ),
    Option("--reuse-port", "", boolean, False, switch=True, hidden=True),
    Option(
        "--compression",
        "offer permessage-deflate to clients that ask for it (worth it with `?batch=`)",
        boolean,
        False,
        env=("BBB_COMPRESSION",),
        switch=True,
    ),
    Option(
        "--embedded-redis",
        "with no Redis configured and none on `localhost:6379`, start a private `redis-server`",
        boolean,
        False,
        env=("BBB_EMBEDDED_REDIS",),
        switch=True,
    ),
    LOG_LEVEL,
    LOG_FORMAT,
)


def settings_from(args: argparse.Namespace) -> Settings:
    """:class:`Settings` from the settled options of ``serve`` (see Command.settle)."""
    return Settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url or DEFAULT_REDIS_URL,
        redis_configured=args.redis_url is not None,
        prefix=args.prefix,
        source=args.source,
        bullmq_prefix=args.bullmq_prefix,
        queues=args.queues,
        max_payload=args.max_payload,
        max_client_frame=args.max_client_frame,
        max_client_buffer=args.max_client_buffer,
        slow_client_timeout=args.slow_client_timeout,
        replay_size=args.replay_size,
        redis_timeout=args.redis_timeout,
        replay_age=args.replay_age,
        auth_secret=args.auth_secret,
        allowed_origins=args.allowed_origins,
        max_connections=args.max_connections,
        max_client_rate=args.max_client_rate,
        embedded_redis=args.embedded_redis,
        workers=args.workers,
        compression=args.compression,
        reuse_port=args.reuse_port,
        log_level=args.log_level.upper(),
    )
