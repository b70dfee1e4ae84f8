"""HTTP handlers: read and validate the body, search (inline or in the thread pool), encode with orjson."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.coalescer import Coalescer
from api.errors import VERSION_HEADER, json_bytes, json_response, versioned
from api.feature_endpoints import grouped_batch, grouped_infer
from api.grouping import wants_groups
from api.index_state import IndexHolder, LoadedIndex
from api.jsonbody import read_json
from api.metrics import Metrics
from api.openapi import openapi_spec
from api.schemas import SearchRequest, parse_batch, parse_infer
from api.service import SearchPolicy, is_light, recommend
from api.settings import Settings

FLOOR_ANSWER = json_bytes({"name": "floor", "recommendations": [{"id": f"p{i}", "score": 1.0} for i in range(10)]})


class Endpoints:
    """The service's routes; each reads the holder once, so one request never mixes two index versions."""

    def __init__(self, holder: IndexHolder, settings: Settings, metrics: Metrics | None = None) -> None:
        self.holder = holder
        self.settings = settings
        self.metrics = metrics  # search time, batch sizes and query kinds (api/metrics.py)
        self.coalescer = Coalescer() if settings.coalesce else None

    async def infer(self, request: Request) -> Response:
        loaded = self.holder.serving()
        raw = await read_json(request, self.settings.max_body_bytes)
        if wants_groups(raw):  # per-category top-n (api/grouping.py)
            return await grouped_infer(loaded, raw, self.settings, self.metrics)
        parsed = parse_infer(raw, loaded.rules)
        policy = SearchPolicy.of(self.settings, loaded)
        started = time.perf_counter()
        light = is_light(loaded, parsed, policy)
        if light and self.coalescer is not None:
            recommendations = await self.coalescer.recommend(loaded, parsed, policy)
            body = json_bytes({"name": parsed.name, "recommendations": recommendations})
        elif light:
            body = _encode_infer(loaded, parsed, policy)
        else:
            body = await run_in_threadpool(_encode_infer, loaded, parsed, policy)
        if self.metrics is not None:
            self.metrics.searched("/infer", loaded, [parsed], time.perf_counter() - started)
        return versioned(body, loaded.version)

    async def batch(self, request: Request) -> Response:
        loaded = self.holder.serving()
        body = await read_json(request, self.settings.max_body_bytes)
        if wants_groups(body):  # some items group by a category (api/grouping.py)
            return await grouped_batch(loaded, body, self.settings, self.metrics)
        parsed = parse_batch(body, loaded.rules, self.settings.max_batch)
        policy = SearchPolicy.of(self.settings, loaded)
        started = time.perf_counter()
        if len(parsed) == 1 and is_light(loaded, parsed[0], policy):
            encoded = _encode_batch(loaded, parsed, policy)
        else:
            encoded = await run_in_threadpool(_encode_batch, loaded, parsed, policy)
        if self.metrics is not None:
            self.metrics.searched("/batch", loaded, parsed, time.perf_counter() - started)
        return versioned(encoded, loaded.version)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        loaded = self.holder.serving()
        return json_response({"status": "ready", "version": loaded.version}, headers={VERSION_HEADER: loaded.version})

    async def index(self, request: Request) -> Response:
        loaded = self.holder.serving()
        return json_response(loaded.describe(self.settings), headers={VERSION_HEADER: loaded.version})

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_spec(self.settings, self.holder.current))

    async def floor(self, request: Request) -> Response:
        """Load-test baseline: the same HTTP stack and body read as /infer, a fixed answer and no search."""
        await request.body()
        return Response(FLOOR_ANSWER, media_type="application/json")


def _encode_infer(loaded: LoadedIndex, parsed: SearchRequest, policy: SearchPolicy) -> bytes:
    recommendations = recommend(loaded, [parsed], policy)[0]
    return json_bytes({"name": parsed.name, "recommendations": recommendations})


def _encode_batch(loaded: LoadedIndex, parsed: list[SearchRequest], policy: SearchPolicy) -> bytes:
    answers = recommend(loaded, parsed, policy)
    return json_bytes(
        [
            {"name": request.name, "recommendations": recommendations}
            for request, recommendations in zip(parsed, answers, strict=True)
        ]
    )
