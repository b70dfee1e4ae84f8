"""Wiring of the operational features into the app: metrics, API keys, overload limits, access log, hot swap.

`create_app` makes one `Operations`, adds its middleware and routes, and calls `started` / `stopping` from the
lifespan. Middleware order, outermost first: access (request id, index version header, metrics, access log) → API
keys (when configured) → limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from api.access import AccessMiddleware
from api.auth import AuthMiddleware, key_sets
from api.hidden_items import HiddenItems
from api.hot_swap import Reloader
from api.index_state import IndexHolder, load_index
from api.limits import LimitsMiddleware
from api.metrics import CONTENT_TYPE, Metrics
from api.responses import json_response
from api.settings import Settings


class Operations:
    """Parameters: multiprocess_dir — PROMETHEUS_MULTIPROC_DIR (None: this process's metrics only)."""

    def __init__(self, settings: Settings, holder: IndexHolder, multiprocess_dir: str | None) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = Metrics(multiprocess_dir)
        self.users, self.admins = key_sets(settings)
        self.reloader = Reloader(holder, settings, self.metrics, load_index)
        self.poller: asyncio.Task[None] | None = None
        self.hidden = HiddenItems(holder, settings, self.metrics)
        self.hidden_poller: asyncio.Task[None] | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/admin/reload", self.reload_endpoint, methods=["POST"]),
            *self.hidden.routes(),
        ]

    def wrap(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> ASGIApp:
        """The operational layers around the app, outermost first: access (request id, index version header,
        metrics, access log) → API keys (only when configured: each layer costs every request) → limits."""
        s = self.settings
        limited = LimitsMiddleware(app, s.max_concurrency, s.request_timeout, s.retry_after, self.metrics)
        if self.users.configured or self.admins.configured:
            limited = AuthMiddleware(limited, self.users, self.admins, self.metrics)  # type: ignore[assignment]
        return AccessMiddleware(limited, routes, self.holder, self.metrics, s.access_log)

    async def started(self) -> None:
        """After the lifespan loaded the index: record it, start following ROOT/current."""
        if self.holder.current is not None:
            self.metrics.serving(self.holder.current)
        if self.settings.reload_interval > 0:
            self.poller = asyncio.create_task(self.reloader.poll(self.settings.reload_interval))
        self.hidden_poller = asyncio.create_task(self.hidden.poll())

    async def stopping(self) -> None:
        for task in (self.poller, self.hidden_poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.metrics.worker_exiting()

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(await run_in_threadpool(self.metrics.render), media_type=CONTENT_TYPE)

    async def reload_endpoint(self, request: Request) -> Response:
        """Check ROOT/current now in the worker that got this request (the others follow at their next poll)."""
        result = await self.reloader.check(force=True)
        body = {"pid": os.getpid(), **result.as_dict(), "reload_interval_seconds": self.settings.reload_interval}
        return json_response(body, 409 if result.outcome == "refused" else 200)
