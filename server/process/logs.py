"""Logging for every ``bitfit`` command: text or JSON lines, each with the request id.

The request id lives in a context variable set by ``server.http.request_id.RequestIds`` for
the duration of one HTTP request; it follows the request into thread-pool work
(contextvars are copied there). Lines outside a request (start-up, the batch worker,
which serves many requests at once) carry ``-``.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import datetime, timezone

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id (+ exc when raised, + the
    ``fields`` a line was logged with: the access log's method, path, status, duration_ms)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        line.update(getattr(record, "fields", None) or {})  # a line's own fields (the access log's)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger at start-up (a second call replaces the first one's handler)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    handler.name = "bitfit"
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == "bitfit"]:  # another's handlers (pytest's) stay
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
