"""Who gets in, and with what: one look at an upgrade request, before any frame.

:func:`admit` checks the method, the headers, the origin and the token, and parses the
query string once (resume point, subscription, batch window); the bridge either sends
the refusal it returns or opens the connection with the :class:`Admission`. Pure: the
bridge logs and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.http11 import Request

from bridge.config import Settings
from bridge.core import subscriptions
from bridge.core.protocol import ResumePoint, parse_resume
from bridge.core.subscriptions import Subscription, parse_batch
from bridge.serving.auth import AuthError, origin_allowed, token_from, verify_token

#: Headers a request may carry once: two of them is a malformed (or a smuggling) request.
SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Upgrade", "Sec-WebSocket-Key")


@dataclass(frozen=True, slots=True)
class Admission:
    """What an accepted client asked for, parsed once: where it resumes from, what it wants,
    how long its events may be held, and when its token expires (Unix time)."""

    point: ResumePoint | None = None
    subscription: Subscription = subscriptions.EVERYTHING
    batch: float = 0.0
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request is turned away, as HTTP."""

    status: HTTPStatus
    why: str


def check_request(request: Request) -> Refused | None:
    """What no request may do, upgrade or plain HTTP: other methods, doubled headers."""
    if request.method not in ("GET", "HEAD"):
        return Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method[:20]!r} not allowed")
    if duplicated := [n for n in SINGLE_HEADERS if len(request.headers.get_all(n)) > 1]:
        return Refused(HTTPStatus.BAD_REQUEST, f"two {duplicated[0]} headers")
    return None


def admit(request: Request, settings: Settings) -> Admission | Refused:
    """Accept an upgrade (what it asks for) or refuse it (why): origin, token, query."""
    if request.method != "GET":
        return Refused(HTTPStatus.BAD_REQUEST, "a WebSocket upgrade is a GET")
    origin = request.headers.get("Origin")
    if settings.allowed_origins is not None and not origin_allowed(
        origin, settings.allowed_origins
    ):
        return Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} not allowed")
    expires_at = None
    if settings.auth_secret is not None:
        token = token_from(request.path, request.headers.get("Authorization"))
        try:
            claims = verify_token(settings.auth_secret, token)
        except AuthError as exc:
            return Refused(HTTPStatus.UNAUTHORIZED, str(exc))
        if isinstance(expires := claims.get("exp"), int | float):
            expires_at = float(expires)
    query = urlsplit(request.path).query
    try:
        return Admission(
            point=parse_resume(query),
            subscription=subscriptions.parse_query(query),
            batch=parse_batch(query),
            expires_at=expires_at,
        )
    except ValueError as exc:
        return Refused(HTTPStatus.BAD_REQUEST, str(exc))
