"""Overload protection per worker: bounded concurrency (503 + Retry-After at once) and a per-request time budget
(504). Size limits (body bytes, batch items, k, search effort) are checked while parsing (api/jsonbody.py,
api/schemas.py).

When the budget runs out before a response has started, a timer sends the client a 504 at once and the request's
own output is dropped; the request itself (and the faiss search it waits for in a thread, which cannot be
interrupted) keeps its concurrency slot until it really ends, so abandoned work still counts against
`max_concurrency` and timeouts cannot pile up unbounded threads.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics
from api.responses import json_response

LOG = logging.getLogger(__name__)

# Never refused nor timed out: probes and scrapes must answer under load; admin reloads take as long as a load.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = ("/admin/",)


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


class LimitsMiddleware:
    """Parameters: max_concurrency — requests in progress (including abandoned ones still running) before 503;
    timeout — seconds before 504 (0: none); retry_after — seconds, sent with 503 and 504."""

    def __init__(self, app: ASGIApp, max_concurrency: int, timeout: float, retry_after: int, metrics: Metrics) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retry_after = str(retry_after)
        self.metrics = metrics
        self.busy = 0
        metrics.track_in_flight(lambda: self.busy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.busy >= self.max_concurrency:
            self.metrics.rejected.labels("concurrency").inc()
            message = f"overloaded: {self.busy} requests in progress in this worker; retry after {self.retry_after}s"
            await self._answer(scope, receive, send, 503, message)
            return
        self.busy += 1
        if self.timeout <= 0:
            try:
                await self.app(scope, receive, send)
            finally:
                self._release()
            return
        await self._with_budget(scope, receive, send)

    async def _with_budget(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Runs the request inline with a timer (no task per request); the timer answers 504 if it fires first."""
        loop = asyncio.get_running_loop()
        started = False
        late: asyncio.Task[None] | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if late is not None:  # abandoned: the client already has its 504
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        def expire() -> None:
            nonlocal late
            if started:  # too late to answer otherwise: let the response finish
                return
            self.metrics.rejected.labels("timeout").inc()
            LOG.warning(
                "%s %s: over the time budget of %gs, answered 504", scope["method"], scope["path"], self.timeout
            )
            message = f"the request took longer than the time budget of {self.timeout:g}s"
            late = loop.create_task(self._answer(scope, receive, send, 504, message))

        timer = loop.call_later(self.timeout, expire)
        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if late is None:
                raise
            LOG.exception("%s %s failed after its 504", scope["method"], scope["path"])
        finally:
            timer.cancel()
            self._release()  # only now: abandoned work keeps its slot until it really ends
            if late is not None:
                await late

    def _release(self) -> None:
        self.busy -= 1

    async def _answer(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        response = json_response({"detail": message}, status, {"Retry-After": self.retry_after})
        await response(scope, receive, send)
