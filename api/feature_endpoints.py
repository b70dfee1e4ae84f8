"""HTTP handlers of the recommendation features: grouped /infer and /batch bodies, /similar and /similar/batch.

Grouped and similar-product searches always run in the thread pool: an exact grouped scan of instacart_products
(48,688 × 384) takes milliseconds, too long for the event loop.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.grouping import (
    GroupTuning,
    batch_bodies,
    grouped_body,
    parse_grouped_infer,
    parse_mixed_batch,
    plan_grouped,
    plan_items,
)
from api.index_state import IndexHolder, LoadedIndex
from api.jsonbody import read_json
from api.metrics import Metrics
from api.responses import json_bytes, versioned
from api.settings import Settings
from api.similar import SimilarRequest, StoredCache, parse_similar, parse_similar_batch, similar_bodies


async def grouped_infer(
    loaded: LoadedIndex, body: Any, settings: Settings, metrics: Metrics | None
) -> tuple[bytes, str]:
    """/infer with group_by (the body is already read and is a JSON object using a grouping field): the encoded
    answer and the index version."""
    request, spec = parse_grouped_infer(body, loaded.rules)
    plan = plan_grouped(loaded, request, spec, GroupTuning.of(settings))
    started = time.perf_counter()
    answer = await run_in_threadpool(lambda: json_bytes(grouped_body(loaded, request, spec, plan)))
    if metrics is not None:
        metrics.record_search("/infer", time.perf_counter() - started, [plan.kind], None)
    return answer, loaded.version


async def grouped_batch(
    loaded: LoadedIndex, body: list[Any], settings: Settings, metrics: Metrics | None
) -> tuple[bytes, str]:
    """/batch in which at least one item uses a grouping field; the others are answered as usual."""
    items = parse_mixed_batch(body, loaded.rules, settings.max_batch)
    plans = plan_items(loaded, items, GroupTuning.of(settings))
    started = time.perf_counter()
    answer = await run_in_threadpool(lambda: json_bytes(batch_bodies(loaded, items, plans)))
    if metrics is not None:
        kinds = [plan.kind for plan in plans]
        metrics.record_search("/batch", time.perf_counter() - started, kinds, len(items))
    return answer, loaded.version


class SimilarEndpoints:
    """POST /similar and POST /similar/batch; each request reads the holder once (one index version)."""

    def __init__(self, holder: IndexHolder, settings: Settings, metrics: Metrics | None = None) -> None:
        self.holder = holder
        self.settings = settings
        self.metrics = metrics
        self.stored = StoredCache()

    async def similar(self, request: Request) -> Response:
        loaded = self.holder.serving()
        parsed = parse_similar(await read_json(request, self.settings.max_body_bytes), loaded.rules)
        started = time.perf_counter()
        body = await run_in_threadpool(self._encode, loaded, [parsed], False)
        self._record("/similar", started, 1, None)
        return versioned(body, loaded.version)

    async def batch(self, request: Request) -> Response:
        loaded = self.holder.serving()
        raw = await read_json(request, self.settings.max_body_bytes)
        parsed = parse_similar_batch(raw, loaded.rules, self.settings.max_batch)
        started = time.perf_counter()
        body = await run_in_threadpool(self._encode, loaded, parsed, True)
        self._record("/similar/batch", started, len(parsed), len(parsed))
        return versioned(body, loaded.version)

    def _record(self, endpoint: str, started: float, count: int, batch: int | None) -> None:
        if self.metrics is not None:
            self.metrics.record_search(endpoint, time.perf_counter() - started, ["similar"] * count, batch)

    def _encode(self, loaded: LoadedIndex, parsed: list[SimilarRequest], batch: bool) -> bytes:
        answers = similar_bodies(loaded, parsed, self.stored.of(loaded.reader), batch)
        return json_bytes(answers if batch else answers[0])
