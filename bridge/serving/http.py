"""Plain HTTP on the WebSocket port: ``/healthz``, ``/metrics``, the live page, refusals.

Every answer is complete (``Content-Length``) and ends the connection. ``HEAD`` gets the
same headers without the body.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

#: The page's policy: its own inline script and style, WebSocket connections, nothing else.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def http_response(
    status: HTTPStatus, body: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """A complete plain-HTTP answer that ends the connection."""
    payload = body.encode()
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = "no-store"
    headers["Content-Length"] = str(len(payload))
    headers["Connection"] = "close"
    return Response(status.value, status.phrase, headers, payload)


def refusal(status: HTTPStatus, why: str) -> Response:
    """A refused upgrade: the status, the reason in the body, and the headers it calls for."""
    response = http_response(status, f"{why}\n")
    if status is HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="bbb-bridge"'
    elif status is HTTPStatus.SERVICE_UNAVAILABLE:
        response.headers["Retry-After"] = "5"
    elif status is HTTPStatus.METHOD_NOT_ALLOWED:
        response.headers["Allow"] = "GET, HEAD"
    return response


#: The answer to a connection past --max-connections, sent as it is accepted.
TOO_MANY = refusal(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections").serialize()


def is_upgrade(request: Request) -> bool:
    return request.headers.get("Upgrade", "").strip().lower() == "websocket"


def plain_answer(
    request: Request,
    *,
    health: Callable[[], tuple[HTTPStatus, dict[str, str | int]]],
    metrics: Callable[[], tuple[bytes, str]],
) -> Response | None:
    """The answer to ``/healthz``, ``/metrics`` or the page (GET or HEAD), or None: the
    request is for something else (the upgrade)."""
    path = urlsplit(request.path).path
    if path == "/healthz":  # open to all: says nothing a stranger could use
        status, body = health()
        response = http_response(status, json.dumps(body), "application/json")
    elif path == "/metrics":  # counts only, like /healthz
        text, content_type = metrics()
        response = http_response(HTTPStatus.OK, text.decode(), content_type)
    elif path in ("/", "/index.html") and not is_upgrade(request):
        response = page_response()  # the live page; it connects back with its own token
    else:
        return None
    if request.method == "HEAD":  # the same headers (Content-Length too), no body
        response = dataclasses.replace(response, body=b"")
    return response


@functools.cache
def _page() -> bytes:
    return resources.files("bridge.serving").joinpath("static/index.html").read_bytes()


def page_response() -> Response:
    response = http_response(HTTPStatus.OK, _page().decode(), "text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
