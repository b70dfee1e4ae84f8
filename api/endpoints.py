"""/infer and /batch (and the small GET routes): validate, plan, search inline or in the thread pool, encode.

`infer` and `batch` take the decoded JSON body and return the encoded answer with the index version that computed
it: api/hot_routes.py calls them straight from ASGI (no Starlette request or response object on the hot path), and
the Starlette routes below wrap them for anything that reaches the router.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.coalescer import Coalescer
from api.feature_endpoints import grouped_batch, grouped_infer
from api.grouping import wants_groups
from api.index_state import IndexHolder, LoadedIndex
from api.jsonbody import read_json
from api.live_recall import LiveRecall
from api.metrics import Metrics
from api.openapi import openapi_spec
from api.responses import VERSION_HEADER, json_bytes, json_response, versioned
from api.schemas import SearchRequest, parse_batch, parse_infer
from api.service import all_inline, plan_requests, recommend
from api.settings import Settings
from index_format.engine import Hits
from index_format.plan import SearchPlan

Answer = tuple[bytes, str]  # encoded JSON body, index version
Keep = Callable[[list[Hits]], None] | None  # given the hits of a request sampled for the live recall check


class Endpoints:
    """The service's routes; each reads the holder once, so one request never mixes two index versions."""

    def __init__(
        self, holder: IndexHolder, settings: Settings, metrics: Metrics | None = None, live: LiveRecall | None = None
    ) -> None:
        self.holder = holder
        self.settings = settings
        self.metrics = metrics  # search time, batch sizes and query kinds (api/metrics.py)
        self.live = live  # samples answers for the live recall check (api/live_recall.py)
        self.coalescer = Coalescer() if settings.coalesce else None

    def _keep(self, loaded: LoadedIndex, parsed: list[SearchRequest], plans: list[SearchPlan]) -> Keep:
        """Where a sampled request's hits go (None for most requests: one random draw decides)."""
        live = self.live
        if live is None or not live.wants():
            return None
        return lambda hits: live.offer(loaded, parsed, plans, hits)

    def _searched(self, endpoint: str, seconds: float, kinds: list[str], batch: int | None) -> None:
        if self.metrics is not None:
            self.metrics.record_search(endpoint, seconds, kinds, batch)
        if self.live is not None:
            self.live.searched(seconds)

    async def infer(self, raw: Any) -> Answer:
        loaded = self.holder.serving()
        if wants_groups(raw):  # per-category top-n (api/grouping.py)
            return await grouped_infer(loaded, raw, self.settings, self.metrics)
        parsed = parse_infer(raw, loaded.rules)
        started = time.perf_counter()
        plans = plan_requests(loaded, [parsed])
        if plans[0].inline and self.coalescer is not None:
            recommendations = await self.coalescer.recommend(loaded, parsed, plans[0])
            body = json_bytes({"name": parsed.name, "recommendations": recommendations})
        elif plans[0].inline:
            body = _encode_infer(loaded, parsed, plans, self._keep(loaded, [parsed], plans))
        else:
            body = await run_in_threadpool(_encode_infer, loaded, parsed, plans, self._keep(loaded, [parsed], plans))
        self._searched("/infer", time.perf_counter() - started, [plans[0].kind], None)
        return body, loaded.version

    async def batch(self, raw: Any) -> Answer:
        loaded = self.holder.serving()
        if wants_groups(raw):  # some items group by a category (api/grouping.py)
            return await grouped_batch(loaded, raw, self.settings, self.metrics)
        parsed = parse_batch(raw, loaded.rules, self.settings.max_batch)
        started = time.perf_counter()
        plans = plan_requests(loaded, parsed)
        keep = self._keep(loaded, parsed, plans)
        if all_inline(plans):
            body = _encode_batch(loaded, parsed, plans, keep)
        else:
            body = await run_in_threadpool(_encode_batch, loaded, parsed, plans, keep)
        self._searched("/batch", time.perf_counter() - started, [plan.kind for plan in plans], len(parsed))
        return body, loaded.version

    async def infer_route(self, request: Request) -> Response:
        return versioned(*await self.infer(await read_json(request, self.settings.max_body_bytes)))

    async def batch_route(self, request: Request) -> Response:
        return versioned(*await self.batch(await read_json(request, self.settings.max_body_bytes)))

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        loaded = self.holder.serving()
        return json_response({"status": "ready", "version": loaded.version}, headers={VERSION_HEADER: loaded.version})

    async def index(self, request: Request) -> Response:
        loaded = self.holder.serving()
        body = loaded.describe(self.settings)
        if self.live is not None:  # reads the merged metrics files: off the event loop
            body["live_recall"] = await run_in_threadpool(self.live.describe, loaded)
        return json_response(body, headers={VERSION_HEADER: loaded.version})

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_spec(self.settings, self.holder.current))


def _encode_infer(loaded: LoadedIndex, parsed: SearchRequest, plans: list[SearchPlan], keep: Keep = None) -> bytes:
    recommendations = recommend(loaded, [parsed], plans, keep)[0]
    return json_bytes({"name": parsed.name, "recommendations": recommendations})


def _encode_batch(
    loaded: LoadedIndex, parsed: list[SearchRequest], plans: list[SearchPlan], keep: Keep = None
) -> bytes:
    answers = recommend(loaded, parsed, plans, keep)
    return json_bytes(
        [
            {"name": request.name, "recommendations": recommendations}
            for request, recommendations in zip(parsed, answers, strict=True)
        ]
    )
