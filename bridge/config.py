"""Bridge settings from flags and an (injectable) environment.

Every flag has an environment variable; flags win. Redis comes from ``--redis-url``,
else ``REDIS_URL``, else the original deployment's ``REDIS_HOST``/``REDIS_PORT``/
``REDIS_USERNAME``/``REDIS_PASSWORD``/``REDIS_USE_TLS``, else ``redis://localhost:6379``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from redis.connection import parse_url

from bridge.protocol import DEFAULT_PREFIX, DEFAULT_WEBSOCKET_PORT

DEFAULT_REDIS_URL = "redis://localhost:6379"
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_MAX_PAYLOAD = 64 * 1024
DEFAULT_MAX_CLIENT_FRAME = 4096
# Far above one burst read from Redis (256 KiB of frames at most), which a healthy
# client may briefly hold in the buffer: only a client that stopped reading gets there.
DEFAULT_MAX_CLIENT_BUFFER = 4 * 1024 * 1024
DEFAULT_SLOW_CLIENT_TIMEOUT = 30.0
DEFAULT_REDIS_TIMEOUT = 3.0
# A few seconds of a heavy burst, or minutes of ordinary traffic: ~1.5 MiB at most.
DEFAULT_REPLAY_SIZE = 10_000
DEFAULT_REPLAY_AGE = 300.0


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line meant for the user."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``bbb-bridge serve`` needs to run."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_WEBSOCKET_PORT
    redis_url: str = DEFAULT_REDIS_URL
    #: One URL, or several comma-separated (Redis Cluster nodes, tried in turn).
    #: Whether the Redis URL came from a flag or the environment (not the default).
    redis_configured: bool = False
    prefix: str = DEFAULT_PREFIX
    #: Larger Redis payloads are dropped (and logged): one event must not cost MiBs per client.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Larger client frames close the connection with 1009 (clients send nothing yet).
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


def env_flag(value: str | None) -> bool:
    """Read ``"true"``/``"1"``/``"yes"``/``"on"`` (any case) as true."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


N = TypeVar("N", int, float)


def number_from_env(kind: type[N], environ: Mapping[str, str], name: str, default: N) -> N:
    """Read a number from the environment; a bad value is a one-line ConfigError."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None


def redis_url_from_env(environ: Mapping[str, str]) -> str | None:
    """Return the Redis URL the environment configures, or None if it configures none."""
    if url := environ.get("REDIS_URL", "").strip():
        return url
    host = environ.get("REDIS_HOST", "").strip()
    port = environ.get("REDIS_PORT", "").strip()
    username = environ.get("REDIS_USERNAME", "")
    password = environ.get("REDIS_PASSWORD", "")
    tls = env_flag(environ.get("REDIS_USE_TLS"))
    if not (host or port or username or password or tls):
        return None
    auth = ""
    if username or password:
        auth = quote(username, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{auth}{host or 'localhost'}:{port or '6379'}"


def split_redis_urls(text: str) -> list[str]:
    """Several Redis addresses (cluster nodes): comma-separated, in the order to try them."""
    return [url.strip() for url in text.split(",") if url.strip()]


def check_redis_urls(text: str) -> str:
    """:func:`check_redis_url` for each of several comma-separated URLs; return them joined."""
    urls = split_redis_urls(text)
    if not urls:
        raise ConfigError("no Redis URL given")
    return ",".join(check_redis_url(url) for url in urls)


def check_redis_url(url: str) -> str:
    """Return ``url`` if redis-py can use it, else raise :class:`ConfigError`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"invalid Redis URL {redact(url)!r}: scheme must be one of "
            + ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: no host")
    try:  # the options too (?socket_timeout=...), as redis-py will read them
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from None
    return url


def redact(url: str) -> str:
    """Hide the password of a URL, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
