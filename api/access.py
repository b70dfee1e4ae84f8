"""Outermost request bookkeeping: request id (X-Request-ID in and out), X-Index-Version on every response, request
metrics and the access log.

A client's X-Request-ID is kept when it is 1–128 characters of ``[A-Za-z0-9._:-]``, else replaced by a new random
id; either way the response carries it and every log record of the request has it (api/logging_setup.py). The
endpoint label of the metrics is the matched route's path (``other`` for unknown paths) so that random URLs cannot
create unbounded label values. Header values (API keys among them) are never logged.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import responses
from api.index_state import IndexHolder
from api.logging_setup import REQUEST_ID
from api.metrics import Metrics

ACCESS_LOG = logging.getLogger("api.access")
REQUEST_ID_HEADER = b"x-request-id"
VERSION_HEADER = responses.VERSION_HEADER.lower().encode("latin-1")
VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIds:
    """New request ids: a random per-process prefix and a counter (32 hex characters, unique across workers and
    restarts; os.urandom per request is a system call on the hot path)."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def of(self, scope: Scope) -> str:
        """The client's X-Request-ID when valid, else a new id."""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and VALID_REQUEST_ID.match(value):
                return bytes(value).decode("ascii")
        return f"{self.prefix}{next(self.counter):016x}"


class AccessMiddleware:
    """Parameters: routes — the app's routes (for endpoint labels); holder — names the served version on responses
    whose endpoint did not name the version it used; access_log — log one line per request."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[BaseRoute], holder: IndexHolder, metrics: Metrics, access_log: bool
    ) -> None:
        self.app = app
        self.routes = routes
        self.holder = holder
        self.metrics = metrics
        self.access_log = access_log
        self.endpoints: dict[str, str] = {}
        self.request_ids = RequestIds()

    def endpoint_of(self, scope: Scope) -> str:
        path = scope["path"]
        known = self.endpoints.get(path)
        if known is not None:
            return known
        label = "other"
        for route in self.routes:
            match, _ = route.matches({**scope, "method": "GET"} if scope["method"] == "HEAD" else scope)
            if match != Match.NONE:
                label = getattr(route, "path", "other")
                break
        if len(self.endpoints) < 1000:  # bounded: random unknown paths cannot grow it, and are matched each time
            self.endpoints[path] = label
        return label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self.request_ids.of(scope)
        token = REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        version: str | None = None
        answered: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, version, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                named = next((value for name, value in headers if name == VERSION_HEADER), None)
                if named is not None:
                    version = named.decode("latin-1")
                elif (loaded := self.holder.current) is not None:
                    headers.append((VERSION_HEADER, loaded.version.encode("latin-1")))
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = time.perf_counter()  # a 504 is answered before its abandoned work ends
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = (answered if answered is not None else time.perf_counter()) - started
            endpoint = self.endpoint_of(scope)
            self.metrics.request_done(endpoint, scope["method"], status, seconds)
            self.metrics.flush_soon()
            if self.access_log:
                client = scope.get("client")
                ACCESS_LOG.info(
                    '%s "%s %s" %d %.1fms version=%s',
                    f"{client[0]}:{client[1]}" if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    seconds * 1000,
                    version or "-",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": f"{client[0]}:{client[1]}" if client else None,
                        "index_version": version,
                    },
                )
            REQUEST_ID.reset(token)
