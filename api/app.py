"""The Starlette application factory (``uvicorn --factory api.app:create_app``)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from api.endpoints import Endpoints
from api.errors import EXCEPTION_HANDLERS
from api.feature_endpoints import SimilarEndpoints
from api.index_state import IndexHolder, load_index
from api.metrics import MULTIPROC_ENV
from api.operations import Operations
from api.settings import Settings, unknown_variables
from index_format.layout import FormatError

LOG = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    """Parameters: settings — read from the RECSYS_* environment variables when None (how uvicorn calls it)."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    for name in unknown_variables(os.environ):
        LOG.warning("ignoring unknown setting %s (see api/README_API.md for the RECSYS_* variables)", name)
    holder = IndexHolder()
    ops = Operations(settings, holder, os.environ.get(MULTIPROC_ENV))
    endpoints = Endpoints(holder, settings, ops.metrics)
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
        yield
        await ops.stopping()
        holder.current = None

    routes = [
        Route("/infer", endpoints.infer, methods=["POST"]),
        Route("/batch", endpoints.batch, methods=["POST"]),
        Route("/similar", similar.similar, methods=["POST"]),
        Route("/similar/batch", similar.batch, methods=["POST"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/index", endpoints.index, methods=["GET"]),
        Route("/openapi.json", endpoints.openapi, methods=["GET"]),
    ]
    if settings.bench_floor:
        routes.append(Route("/_floor", endpoints.floor, methods=["POST"]))
    routes.extend(ops.routes())
    app = Starlette(
        routes=routes,
        middleware=ops.middleware(routes),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.settings = settings
    app.state.ops = ops
    return app
