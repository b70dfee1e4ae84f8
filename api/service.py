"""Validated requests → search plans (index_format/plan.py) → recommendations.

Every request is planned once (`plan_requests`); the plan decides where it runs (`inline`: on the event loop, else
in the thread pool), what the metrics count, and how it is searched. Nothing here re-decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from api.index_state import LoadedIndex
from api.schemas import SearchRequest
from index_format.engine import Hits, SearchIndex
from index_format.plan import SearchPlan

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

Recommendation = dict[str, Any]  # {"id": str | int, "score": np.float32 (orjson writes its shortest repr)}


def plan_requests(loaded: LoadedIndex, requests: Sequence[SearchRequest]) -> list[SearchPlan]:
    return [loaded.engine.plan(request) for request in requests]


def all_inline(plans: Sequence[SearchPlan]) -> bool:
    """Whether a request made of these plans may run on the event loop: only a single light plan does (a batch
    of light ones adds up)."""
    return len(plans) == 1 and plans[0].inline


def recommend(
    loaded: LoadedIndex,
    requests: Sequence[SearchRequest],
    plans: Sequence[SearchPlan] | None = None,
    keep: Callable[[list[Hits]], None] | None = None,
) -> list[list[Recommendation]]:
    """Recommendations for each request, in request order. keep: also given the hits (a live recall sample)."""
    if not requests:
        return []
    hits = loaded.engine.search(requests, plans)
    if keep is not None:
        keep(hits)
    return [
        recommendations(loaded, found, request.with_metadata) for request, found in zip(requests, hits, strict=True)
    ]


def recommendations(loaded: LoadedIndex, hits: Hits, with_metadata: bool = False) -> list[Recommendation]:
    ids = loaded.engine.external_ids(hits.rows)
    if with_metadata:
        return with_metadata_of(loaded.engine, hits.rows, ids, hits.scores)
    return [{"id": id_, "score": score} for id_, score in zip(ids, hits.scores, strict=True)]


def with_metadata_of(engine: SearchIndex, rows: I64, ids: list[Any], scores: F32) -> list[Recommendation]:
    """Results carrying `"metadata": {field: value}` (null where a product has no value for the field)."""
    fields = engine.reader.manifest.metadata
    codes = {name: engine.metadata_codes_of(name, rows) for name in fields}
    return [
        {
            "id": id_,
            "score": score,
            "metadata": {name: (fields[name][c[i]] if c[i] >= 0 else None) for name, c in codes.items()},
        }
        for i, (id_, score) in enumerate(zip(ids, scores, strict=True))
    ]
