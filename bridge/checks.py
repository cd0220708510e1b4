"""What a good value is: Redis and WebSocket URLs, TLS files, tokens, secrets, origins.

Each check returns the value (normalized) or raises ``ValueError``/:class:`ConfigError`
with one line saying what is wrong, never echoing a password (see :func:`redact`). The
option tables (:mod:`bridge.config`) call them for flags and variables alike.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from redis.connection import parse_url

from bridge.options import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
NEW_SECRET_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: Never in a URL, a token or a host as given: whitespace and control characters.
UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def split_redis_urls(text: str) -> list[str]:
    """Several Redis addresses (cluster nodes): comma-separated, in the order to try them."""
    return [url.strip() for url in text.split(",") if url.strip()]


def check_redis_urls(text: str | list[str]) -> str:
    """:func:`check_redis_url` for each URL (a list, or comma-separated); return them joined."""
    urls = split_redis_urls(",".join(text) if isinstance(text, list) else text)
    if not urls:
        raise ConfigError("no Redis URL given")
    return ",".join(check_redis_url(url) for url in urls)


#: The URL options a Redis URL may carry, and what each must be: redis-py would pass any
#: other one to its connection class (a TypeError when it is used), and the bridge's own
#: reader would ignore it.
_SECONDS = "a number of seconds above 0"
REDIS_URL_OPTIONS: dict[str, str] = {
    "db": "a whole number from 0",
    "socket_timeout": _SECONDS,
    "socket_connect_timeout": _SECONDS,
    "health_check_interval": "a whole number of seconds",
    "socket_keepalive": "true or false",
    "retry_on_timeout": "true or false",
    "ssl_check_hostname": "true or false",
    "protocol": "2 or 3",
    "client_name": "a name",
    "max_connections": "a whole number above 0",
    "ssl_cert_reqs": "none, optional or required",
    "ssl_ca_certs": "a file",
    "ssl_ca_path": "a directory",
    "ssl_ca_data": "PEM text",
    "ssl_certfile": "a file",
    "ssl_keyfile": "a file",
    "ssl_password": "a password",
    "ssl_min_version": "a TLS version number",
    "ssl_ciphers": "an OpenSSL cipher list",
}
_WORDS = {"true", "false", "1", "0", "yes", "no", "on", "off"}


def _check_redis_option(name: str, value: str) -> bool:
    """Whether ``value`` is what the option ``name`` must be."""
    kind = REDIS_URL_OPTIONS[name]
    if kind == _SECONDS:
        return _is_decimal(value) and 0 < float(value) < 10**6
    if kind == "true or false":
        return value.lower() in _WORDS
    if kind == "2 or 3":
        return value in ("2", "3")
    if kind.startswith("a whole number"):
        return value.isascii() and value.isdigit() and (int(value) > 0 or "above" not in kind)
    if kind.startswith("none,"):
        return value.lower() in ("none", "optional", "required")
    if kind == "a TLS version number":
        return value.isascii() and value.isdigit()
    return bool(value)


def _is_decimal(text: str) -> bool:
    return re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text) is not None


def check_redis_url(url: str) -> str:
    """Return ``url`` if redis-py and the bridge's reader can use it, else raise ConfigError."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {shown!r}: {exc}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"invalid Redis URL {shown!r}: scheme must be one of "
            + ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"invalid Redis URL {shown!r}: no host")
    if port == 0:
        raise ConfigError(f"invalid Redis URL {shown!r}: port 0 (redis-py would use 6379)")
    if UNSAFE.search(url):
        raise ConfigError(f"invalid Redis URL {shown!r}: spaces or control characters")
    if (
        parts.scheme != "unix"
        and parts.path not in ("", "/")
        and not re.fullmatch(r"/[0-9]+", parts.path)
    ):
        raise ConfigError(f"invalid Redis URL {shown!r}: the path is a database number, /0")
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in REDIS_URL_OPTIONS:
            raise ConfigError(
                f"invalid Redis URL {shown!r}: unknown option {name!r} "
                f"(known: {', '.join(REDIS_URL_OPTIONS)})"
            )
        if not all(_check_redis_option(name, value) for value in values):
            raise ConfigError(
                f"invalid Redis URL {shown!r}: {name} must be {REDIS_URL_OPTIONS[name]}"
            )
    try:  # as redis-py will read them
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {shown!r}: {exc}") from None
    if parts.scheme == "rediss":
        try:  # the reader's own TLS (bridge.sources.pubsub), checked now
            tls_context(options)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid Redis URL {redact(url)!r}: TLS: {exc}") from None
    return url


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The TLS context a ``rediss://`` URL asks for (None for ``redis://``), as redis-py
    reads the same options: ``ssl_cert_reqs`` (none, optional, required: the default),
    ``ssl_ca_certs``/``ssl_ca_path``/``ssl_ca_data`` (a private CA), ``ssl_certfile`` and
    ``ssl_keyfile`` (+ ``ssl_password``: mutual TLS), ``ssl_check_hostname`` (default:
    on, unless certificates are not required), ``ssl_min_version``.

    Raises OSError (a file that cannot be read) or ValueError (a value that cannot work).
    """
    connection_class = options.get("connection_class")
    if connection_class is None or "SSL" not in getattr(connection_class, "__name__", ""):
        return None
    reqs = options.get("ssl_cert_reqs", "required")
    if isinstance(reqs, str):
        if reqs.lower() not in _CERT_REQS:
            raise ValueError("ssl_cert_reqs must be none, optional or required")
        reqs = _CERT_REQS[reqs.lower()]
    where = ", ".join(
        f"{name}={options[name]}"
        for name in ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
        if options.get(name)
    )
    try:
        context = ssl.create_default_context(
            cafile=options.get("ssl_ca_certs"),
            capath=options.get("ssl_ca_path"),
            cadata=options.get("ssl_ca_data"),
        )
        certfile = options.get("ssl_certfile") or options.get("ssl_keyfile")
        if certfile:
            context.load_cert_chain(
                certfile, options.get("ssl_keyfile"), options.get("ssl_password")
            )
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"cannot load {where}: {exc.strerror or exc}") from None
    check = options.get("ssl_check_hostname", True)
    context.check_hostname = bool(check) and reqs != ssl.CERT_NONE
    context.verify_mode = reqs
    if (minimum := options.get("ssl_min_version")) is not None:
        context.minimum_version = ssl.TLSVersion(minimum)
    return context


def secret_problem(secret: str) -> str | None:
    """What is wrong with ``secret`` as an HS256 key, or None."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return (
            f"the auth secret must be at least {MIN_SECRET_BYTES} bytes long; "
            f"make one with: {NEW_SECRET_HINT}"
        )
    return None


def normalize_origin(origin: str) -> str:
    """``HTTPS://App.Example.com/`` and ``https://app.example.com`` are the same origin."""
    return origin.strip().rstrip("/").lower()


def parse_origins(text: str) -> frozenset[str]:
    """A comma- or space-separated list of origins, e.g. ``https://a.example,https://b.example``."""
    return frozenset(normalize_origin(o) for o in text.replace(",", " ").split() if o.strip())


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


# -- WebSocket URLs ---------------------------------------------------------------


def check_websocket_url(raw: str) -> str:
    """A ``ws://`` or ``wss://`` URL with a host and a usable port (not 0)."""
    url = raw.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise ValueError(f"is not a usable URL ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not host:
        raise ValueError("must be a ws:// or wss:// URL with a host")
    if port == 0:
        raise ValueError("must name a port from 1 to 65535 (or none: 80, 443)")
    if UNSAFE.search(url):
        raise ValueError("must not hold spaces or control characters (percent-encode them)")
    return url


def check_token(raw: str) -> str:
    """A token as a header carries it: printable ASCII, no spaces (a JWT is base64url)."""
    token = raw.strip()
    if not token or not token.isascii() or UNSAFE.search(token):
        raise ValueError("must be one word of printable ASCII (bbb-bridge token prints one)")
    return token


def read_token_file(path: str) -> str | None:
    """The token in ``path`` (surrounding whitespace ignored); OSError says why it cannot
    be used (unreadable, not text, not one word of printable ASCII)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read().strip()
    except OSError as exc:
        raise OSError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OSError(f"the token file {path} is not text") from None
    if not text:
        return None
    try:
        return check_token(text)
    except ValueError as exc:
        raise OSError(f"the token in {path} {exc}") from None


def nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw
