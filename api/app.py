"""The Starlette application factory (``uvicorn --factory api.app:create_app``)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import ASGIApp

from api.endpoints import Endpoints
from api.errors import EXCEPTION_HANDLERS
from api.feature_endpoints import SimilarEndpoints
from api.hot_routes import Handler, HotRoutes
from api.index_state import IndexHolder, load_index
from api.live_recall import LiveRecall, RecallConfig
from api.metrics import MULTIPROC_ENV
from api.operations import Operations
from api.settings import Settings, unknown_variables
from api.worker_lifetime import exit_with_parent
from index_format.layout import FormatError

LOG = logging.getLogger(__name__)


class ServiceApp(Starlette):
    """Starlette with the service's own layers outside its middleware stack: Starlette's error middleware and
    router then cost only the requests that reach them, not the hot routes (api/hot_routes.py)."""

    def __init__(self, wrap: Callable[[ASGIApp], ASGIApp], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.wrap = wrap

    def build_middleware_stack(self) -> ASGIApp:
        return self.wrap(super().build_middleware_stack())


def create_app(settings: Settings | None = None, extra_hot_routes: Mapping[str, Handler] | None = None) -> Starlette:
    """Parameters: settings — read from the RECSYS_* environment variables when None (how uvicorn calls it);
    extra_hot_routes — more POST routes answered like /infer (benchmarks add a fixed answer to measure the service's
    own layers; the production app has none)."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    for name in unknown_variables(os.environ):
        LOG.warning("ignoring unknown setting %s (see api/README_API.md for the RECSYS_* variables)", name)
    if settings.server == "granian":
        exit_with_parent()  # a granian worker (uvicorn's are asked in api/tcp_config.py)
    holder = IndexHolder()
    ops = Operations(settings, holder, os.environ.get(MULTIPROC_ENV))
    live = LiveRecall(RecallConfig.of(settings), holder, ops.metrics.registry, os.environ.get(MULTIPROC_ENV))
    endpoints = Endpoints(holder, settings, ops.metrics, live)
    similar = SimilarEndpoints(holder, settings, ops.metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if "OMP_NUM_THREADS" not in os.environ:
            LOG.warning("OMP_NUM_THREADS is not set: set it to 1 (recsys-serve does) so searches do not oversubscribe")
        try:
            holder.current = await run_in_threadpool(load_index, settings)
        except FormatError as exc:
            LOG.error("cannot serve the index under %s: %s", settings.index_root, exc)
            raise
        await ops.started()
        live.start()
        yield
        live.stop()
        await ops.stopping()
        holder.current = None

    routes = [
        Route("/infer", endpoints.infer_route, methods=["POST"]),
        Route("/batch", endpoints.batch_route, methods=["POST"]),
        Route("/similar", similar.similar, methods=["POST"]),
        Route("/similar/batch", similar.batch, methods=["POST"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/index", endpoints.index, methods=["GET"]),
        Route("/openapi.json", endpoints.openapi, methods=["GET"]),
        *ops.routes(),
    ]
    hot = {"/infer": endpoints.infer, "/batch": endpoints.batch, **(extra_hot_routes or {})}

    def wrap(starlette_stack: ASGIApp) -> ASGIApp:
        return ops.wrap(HotRoutes(starlette_stack, hot, holder, settings.max_body_bytes), routes)

    app = ServiceApp(wrap, routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.holder = holder
    app.state.settings = settings
    app.state.ops = ops
    app.state.live_recall = live
    return app
