"""``bbb-bridge tail``: the raw test client — every received message as one JSON line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import TextIO

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException

from bridge.checks import read_token_file
from bridge.core.backoff import Backoff
from bridge.core.protocol import ResumeTracker, parse_frame, with_resume
from bridge.core.sanitize import is_forbidden
from bridge.wsio.plumbing import CLOSE_TIMEOUT

log = logging.getLogger("bridge.tail")


def as_json_line(frame: str | bytes) -> str | None:
    """Return the frame as one line of JSON, or None if it is not JSON.

    Readable (``ensure_ascii=False``) and safe on a terminal: every character the sanitizer
    forbids (C1 controls, bidi overrides, separators...) is written as a JSON escape, so
    the line decodes to the same message and never acts on the terminal.
    """
    try:
        message = json.loads(frame)
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):  # not JSON, or NaN/Infinity (not JSON either)
        return None
    if line.isprintable() and line.isascii():
        return line
    return "".join(_json_escape(c) if is_forbidden(c) else c for c in line)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


#: Refusals that retrying cannot fix: the token or the origin is wrong.
PERMANENT = {401: "unauthorized", 403: "forbidden"}


async def tail(
    url: str,
    *,
    count: int = 0,
    token: str | None = None,
    token_file: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print every message from ``url``, reconnecting forever; stop after ``count`` if > 0.

    After a drop it resumes (``?since=&epoch=``): the bridge replays what was missed.
    ``token_file`` is read again before every attempt (rotated tokens).
    """
    backoff = Backoff(base=0.5, cap=30.0)
    received = 0
    tracker = ResumeTracker()
    while True:
        resume = tracker.point
        try:
            if token_file is not None:
                token = await asyncio.to_thread(read_token_file, token_file)
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with connect(
                with_resume(url, resume) if resume else url,
                open_timeout=5,
                close_timeout=CLOSE_TIMEOUT,
                max_size=2**24,
                additional_headers=headers,
            ) as ws:
                log.info("Connected to %s%s", url, f" (from seq {resume.since})" if resume else "")
                backoff.reset()
                async for frame in ws:
                    line = as_json_line(frame)
                    if line is None:
                        log.warning("Unparsable message: %r", frame[:200])
                        continue
                    tracker.observe(parse_frame(frame))
                    print(line, file=out, flush=True)
                    received += 1
                    if count and received >= count:
                        return 0
            reason = "closed by the server"
        except InvalidURI as exc:
            log.error("invalid URL %r: %s", url, exc)
            return 2
        except InvalidStatus as exc:
            response = exc.response
            if response.status_code not in PERMANENT:
                reason = f"HTTP {response.status_code}"
            else:
                why = response.body.decode(errors="replace").strip()[:200] if response.body else ""
                log.error(
                    "The bridge refused the connection: HTTP %d %s", response.status_code, why
                )
                return 1
        except (TimeoutError, OSError, InvalidHandshake, WebSocketException) as exc:
            reason = str(exc) or type(exc).__name__
        delay = backoff.next_delay()
        log.warning("Disconnected from %s (%s); retrying in %.1fs", url, reason, delay)
        await asyncio.sleep(delay)
