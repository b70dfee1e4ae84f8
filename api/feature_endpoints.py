"""HTTP handlers of the recommendation features: grouped /infer and /batch bodies, /similar and /similar/batch.

Grouped and similar-product searches always run in the thread pool: an exact grouped scan of instacart_products
(48,688 × 384) takes milliseconds, too long for the event loop.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError, json_bytes
from api.grouping import GroupTuning, batch_bodies, grouped_body, parse_grouped_infer, parse_mixed_batch
from api.index_state import IndexHolder, LoadedIndex
from api.jsonbody import read_json
from api.service import SearchPolicy
from api.settings import Settings
from api.similar import SimilarRequest, StoredCache, parse_similar, parse_similar_batch, similar_bodies

VERSION_HEADER = "X-Index-Version"


async def grouped_infer(loaded: LoadedIndex, body: Any, settings: Settings) -> Response:
    """/infer with group_by (the body is already read and is a JSON object using a grouping field)."""
    request, spec = parse_grouped_infer(body, loaded.rules)
    policy, tuning = SearchPolicy.of(settings, loaded), GroupTuning.of(settings)
    answer = await run_in_threadpool(lambda: json_bytes(grouped_body(loaded, request, spec, policy, tuning)))
    return Response(answer, media_type="application/json", headers={VERSION_HEADER: loaded.version})


async def grouped_batch(loaded: LoadedIndex, body: list[Any], settings: Settings) -> Response:
    """/batch in which at least one item uses a grouping field; the others are answered as usual."""
    items = parse_mixed_batch(body, loaded.rules, settings.max_batch)
    policy, tuning = SearchPolicy.of(settings, loaded), GroupTuning.of(settings)
    answer = await run_in_threadpool(lambda: json_bytes(batch_bodies(loaded, items, policy, tuning)))
    return Response(answer, media_type="application/json", headers={VERSION_HEADER: loaded.version})


class SimilarEndpoints:
    """POST /similar and POST /similar/batch; each request reads the holder once (one index version)."""

    def __init__(self, holder: IndexHolder, settings: Settings) -> None:
        self.holder = holder
        self.settings = settings
        self.stored = StoredCache()

    def _loaded(self) -> LoadedIndex:
        loaded = self.holder.current
        if loaded is None:
            raise ApiError(503, "the index is not loaded yet")
        return loaded

    async def similar(self, request: Request) -> Response:
        loaded = self._loaded()
        parsed = parse_similar(await read_json(request, self.settings.max_body_bytes), loaded.rules)
        body = await run_in_threadpool(self._encode, loaded, [parsed], False)
        return Response(body, media_type="application/json", headers={VERSION_HEADER: loaded.version})

    async def batch(self, request: Request) -> Response:
        loaded = self._loaded()
        raw = await read_json(request, self.settings.max_body_bytes)
        parsed = parse_similar_batch(raw, loaded.rules, self.settings.max_batch)
        body = await run_in_threadpool(self._encode, loaded, parsed, True)
        return Response(body, media_type="application/json", headers={VERSION_HEADER: loaded.version})

    def _encode(self, loaded: LoadedIndex, parsed: list[SimilarRequest], batch: bool) -> bytes:
        policy = SearchPolicy.of(self.settings, loaded)
        answers = similar_bodies(loaded, parsed, policy, self.stored.of(loaded.reader), batch)
        return json_bytes(answers if batch else answers[0])
