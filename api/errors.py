"""Errors a client can cause, and the handlers that turn every error into a JSON ``{"detail": ...}`` response."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.responses import json_response

LOG = logging.getLogger(__name__)

# One entry of a 422 detail list: where (path into the request body), what, and its type.
Problem = dict[str, Any]


class ApiError(Exception):
    """A request the service refuses; detail is a message or, for 422, a list of `problem` entries."""

    def __init__(self, status: int, detail: str | list[Problem]) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(loc: list[str | int], msg: str, kind: str = "value_error") -> Problem:
    return {"loc": loc, "msg": msg, "type": kind}


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response({"detail": exc.detail}, exc.status)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (and any other HTTPException) as JSON, keeping its headers (e.g. Allow)."""
    assert isinstance(exc, HTTPException)
    return json_response({"detail": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    """Last resort: a bug must still answer JSON, and is logged with its traceback by Starlette."""
    LOG.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return json_response({"detail": "internal server error"}, 500)


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_error_handler,
    Exception: server_error_handler,
}
