"""Log lines: text or ``--log-format json`` (one object per line), never a secret, and
never anything that acts on the terminal they are read in.

Every record goes through :func:`redact_secrets` as the last step of formatting, whichever
logger wrote it (ours, websockets' own debug log of request lines and headers,
asyncio's) and at every level: tokens (``?token=``, ``Authorization: Bearer``, anything
shaped like a JWT) and passwords in Redis URLs become ``***``. Text lines then go
through the sanitizer, line by line (a Redis error, a close reason or a refusal body may
hold escape sequences); JSON lines are ASCII, with every other character escaped.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from urllib.parse import unquote

from bridge.core.sanitize import sanitize

_SECRETS = [
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "***"),  # a JWT
    (re.compile(r"(?i)(token=)[^&\s'\"\\]+"), r"\g<1>***"),
    (re.compile(r"(?i)(bearer\s+)[^\s'\"\\,]+"), r"\g<1>***"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?)[^'\"\r\n]+"), r"\g<1>***"),
    (re.compile(r"(rediss?://[^:/@\s]*:)[^@\s]+@"), r"\g<1>***@"),
]


def redact_secrets(text: str) -> str:
    """``text`` with every token and password it holds replaced by ``***``; words with
    percent-escapes are decoded first (``%74oken=%65yJ...`` is a token too), their
    control characters escaped so that a ``%0a`` cannot start a forged line."""
    if "%" in text:
        text = _ESCAPED_WORD.sub(lambda m: sanitize(unquote(m.group())), text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


_ESCAPED_WORD = re.compile(r"\S*%[0-9A-Fa-f]{2}\S*")


LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = redact_secrets(super().format(record))
        return "\n".join(sanitize(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """``{"time": "...Z", "level": "INFO", "logger": "bridge", "message": "..."}``."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if worker := os.environ.get("BBB_WORKER"):
            entry["worker"] = int(worker) if worker.isdigit() else worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)  # ASCII: nothing in it can act on a terminal


def formatter(kind: str) -> logging.Formatter:
    """``text`` or ``json``; a ``--workers`` child says which worker it is."""
    if kind == "json":
        return JsonFormatter()
    worker = os.environ.get("BBB_WORKER")
    text = TEXT_FORMAT.replace("%(message)s", f"[w{worker}] %(message)s") if worker else TEXT_FORMAT
    return TextFormatter(text, datefmt="%Y-%m-%d %H:%M:%S")
