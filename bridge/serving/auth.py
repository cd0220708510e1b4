"""Who may connect: signed tokens (HS256 JWT, via PyJWT) and browser origins. No I/O.

A client presents its token as ``?token=`` (browsers cannot set headers on a
WebSocket) or ``Authorization: Bearer``. The bridge checks it before the upgrade, so
an unauthenticated client gets an HTTP 401 and never a frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from bridge.checks import normalize_origin

ALGORITHM = "HS256"
DEFAULT_TTL = 24 * 3600.0


class AuthError(Exception):
    """Why a token was refused, in a few words (sent back in the 401's body)."""


def issue_token(secret: str, *, ttl: float | None = DEFAULT_TTL, subject: str | None = None) -> str:
    """A signed token; it expires after ``ttl`` seconds (never, with None)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now}
    if ttl is not None:
        claims["exp"] = now + int(ttl)
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None) -> dict[str, Any]:
    """The token's claims if ``secret`` signed it and it has not expired; else AuthError."""
    if not token:
        raise AuthError("missing token (?token= or Authorization: Bearer)")
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM])
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token ({exc})"[:120]) from None
    return claims


def token_from(path: str, authorization: str | None) -> str | None:
    """The token a request presents: ``Authorization: Bearer <t>`` first, then ``?token=``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[-1] if tokens else None


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Browsers always send ``Origin``; a request without one is not from a browser page.

    Only the listed origins pass: not even "the same origin as the ``Host`` header", which
    a DNS-rebinding page controls as well as its ``Origin``. (The bridge's own page is one
    more origin to list, when it is to be used behind ``--allowed-origins``.)
    """
    return origin is None or normalize_origin(origin) in allowed
