"""``--log-format json``: one JSON object per log line, for log collectors."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time": "...Z", "level": "INFO", "logger": "bridge", "message": "..."}``."""

    def format(self, record: logging.LogRecord) -> str:
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
        return json.dumps(entry, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    """``text`` or ``json``; a ``--workers`` child says which worker it is."""
    if kind == "json":
        return JsonFormatter()
    worker = os.environ.get("BBB_WORKER")
    text = TEXT_FORMAT.replace("%(message)s", f"[w{worker}] %(message)s") if worker else TEXT_FORMAT
    return logging.Formatter(text, datefmt="%Y-%m-%d %H:%M:%S")
