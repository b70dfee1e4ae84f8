"""Log formats (RECSYS_LOG_FORMAT=text or json) and the request id attached to every record logged during a request.

JSON lines carry ``ts``, ``level``, ``logger``, ``message``, ``request_id`` (inside a request) and, for access lines,
the request's fields (method, path, status, duration_ms, client, index_version).
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import time
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client", "index_version")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def with_format(config: dict[str, Any], log_format: str) -> dict[str, Any]:
    """A dictConfig (uvicorn's, as extended by api/__main__.py) with JSON formatters when log_format is "json", and
    the request-id filter on every handler."""
    config = copy.deepcopy(config)
    config.setdefault("filters", {})["request_id"] = {"()": RequestIdFilter}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("request_id")
    if log_format == "json":
        for name in list(config.get("formatters", {})):
            config["formatters"][name] = {"()": JsonFormatter}
    return config
