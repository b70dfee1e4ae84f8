"""Validated requests → grouped `IndexReader.search` calls → recommendations.

Requests with the same options (k, exact, filter, params) are searched together in one call. Exclusions are
applied by fetching k + (number of excluded products found in the index) and dropping them, so requests with
different exclusions still share a search.

A filter picks its path by selectivity. A graph walk or IVF probe ignores the filter and only drops results, so
selective filters lose recall (measured on the 3,000-item test catalogue: HNSW with a filter keeping 0.4% of the
items, efSearch 2048: recall@10 0.77) while an exact scan of just the allowed rows is exact and cheap (instacart
departments, 37–6,424 of 48,688 rows × 384: 31–471 µs by faiss's by-id path). So filters keeping at most
`filter_exact_fraction` of the rows, or with allowed rows × dim within `filter_exact_budget`, are searched exactly;
broader ones go through the ANN index with an ID selector and the default effort raised by 1/selectivity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api.index_state import LoadedIndex
from api.schemas import SearchRequest
from api.settings import Settings
from index_format.reader import IndexReader, SearchResult

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

Recommendation = dict[str, Any]  # {"id": str | int, "score": np.float32 (orjson writes its shortest repr)}

# Parameters that buy recall in proportion to the work done; raised for selective filters.
EFFORT_PARAMS = ("efSearch", "nprobe")
NO_ROWS: I64 = np.empty(0, dtype=np.int64)


# Scanned rows × dim under which an exact search runs on the event loop rather than in the thread pool. Measured with
# 2 workers on 2 cores (gowalla_als, IVF exact = every list probed, 41k × 64 = 2.6M): inline 3.1k req/s at c=64
# against 2.0k through the pool (the hop and GIL hand-offs cost more than the loop gains when every core is busy).
INLINE_WORK = 4_000_000


@dataclass(frozen=True)
class SearchPolicy:
    filter_exact_fraction: float
    filter_exact_budget: int
    param_limits: Mapping[str, int]

    @classmethod
    def of(cls, settings: Settings, loaded: LoadedIndex) -> SearchPolicy:
        return cls(settings.filter_exact_fraction, settings.filter_exact_budget, loaded.rules.param_limits)

    def filter_is_exact(self, allowed_rows: int, count: int, dim: int) -> bool:
        return allowed_rows <= self.filter_exact_fraction * count or allowed_rows * dim <= self.filter_exact_budget


def recommend(loaded: LoadedIndex, requests: list[SearchRequest], policy: SearchPolicy) -> list[list[Recommendation]]:
    """Recommendations for each request, in request order."""
    if len(requests) == 1:
        return _search_group(loaded, requests, policy)
    groups: dict[Any, list[int]] = {}
    for position, request in enumerate(requests):
        groups.setdefault(request.group_key, []).append(position)
    out: list[list[Recommendation]] = [[] for _ in requests]
    for positions in groups.values():
        answers = _search_group(loaded, [requests[p] for p in positions], policy)
        for position, answer in zip(positions, answers, strict=True):
            out[position] = answer
    return out


def is_light(loaded: LoadedIndex, request: SearchRequest, policy: SearchPolicy) -> bool:
    """Whether one request is cheap enough to answer on the event loop: an unfiltered ANN probe, or an exact scan
    of at most INLINE_WORK. Bigger scans and filtered ANN walks (raised effort) go to the thread pool, so one heavy
    request cannot stall the loop for long."""
    reader = loaded.reader
    allowed = loaded.filters.allowed_rows(request.filter).size if request.filter is not None else None
    if request.exact or reader.family == "flat":
        return (reader.count if allowed is None else allowed) * reader.dim <= INLINE_WORK
    if allowed is None:
        return True
    return policy.filter_is_exact(allowed, reader.count, reader.dim) and allowed * reader.dim <= INLINE_WORK


def _search_group(
    loaded: LoadedIndex, requests: list[SearchRequest], policy: SearchPolicy
) -> list[list[Recommendation]]:
    reader = loaded.reader
    first = requests[0]
    allowed = loaded.filters.allowed_rows(first.filter) if first.filter is not None else None
    available = reader.count if allowed is None else int(allowed.size)
    excluded = [_rows_of(reader, request.exclude) for request in requests]
    k_search = min(first.k + max(rows.size for rows in excluded), available)
    if k_search == 0:
        return [[] for _ in requests]
    xq: F32 = first.vector[None] if len(requests) == 1 else np.stack([request.vector for request in requests])
    found = _search(reader, xq, k_search, first, allowed, policy)
    answers = []
    for i, request in enumerate(requests):
        rows, scores = found.rows[i], found.scores[i]
        keep = rows >= 0
        if excluded[i].size:
            keep &= ~np.isin(rows, excluded[i])
        if not keep.all():
            rows, scores = rows[keep], scores[keep]
        ids = reader.external_ids(rows[: request.k])
        answers.append([{"id": id_, "score": score} for id_, score in zip(ids, scores[: request.k], strict=False)])
    return answers


def _rows_of(reader: IndexReader, ids: tuple[int | str, ...]) -> I64:
    if not ids:
        return NO_ROWS
    rows = reader.rows_of_ids(list(ids))
    return np.unique(rows[rows >= 0])


def _search(
    reader: IndexReader, xq: F32, k: int, request: SearchRequest, allowed: I64 | None, policy: SearchPolicy
) -> SearchResult:
    if request.exact or reader.family == "flat":
        return reader.search(xq, k, exact=True, allowed=allowed)
    if allowed is not None and policy.filter_is_exact(allowed.size, reader.count, reader.dim):
        return reader.search(xq, k, exact=True, allowed=allowed)
    if allowed is None:
        return reader.search(xq, k, params=dict(request.params) if request.params else None)
    params = raised_effort(reader.default_params(), allowed.size / reader.count, policy.param_limits)
    params.update(request.params)
    return reader.search(xq, k, params=params, allowed=allowed)


def raised_effort(params: dict[str, int], fraction: float, limits: Mapping[str, int]) -> dict[str, int]:
    """Scale efSearch / nprobe by 1/fraction (capped by the configured maximum): with a filter keeping a fraction
    f of the rows, a search visiting n candidates finds about f·n allowed ones."""
    out = dict(params)
    for name in EFFORT_PARAMS:
        if name in out:
            scaled = math.ceil(out[name] / max(fraction, 1e-9))
            out[name] = max(out[name], min(scaled, limits.get(name, scaled)))
    return out
