"""Queries → plans → results, for one loaded index version: the search core shared by the HTTP service and the
Python `Searcher`.

Queries whose plans agree (method, rows fetched, allowed rows, parameters) are executed together in one vectorised
call. Exclusions are applied by fetching k + (number of excluded products found in the index) and dropping them, so
queries with different exclusions still share a search. Results never hold padding: fewer than k only when fewer
rows qualify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from index_format.filters import FilterTable
from index_format.plan import NO_ROWS, ParamsKey, SearchPlan, SearchPolicy, plan_search
from index_format.query import Query
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Hits:
    rows: I64  # best first, at most k, no padding
    scores: F32


class Effort:
    """The ANN parameters plans start from: None for the manifest's, else the raised ones the service's live recall
    check put in force (api/effort.py). Replaced as a whole (one reference assignment), read once per plan."""

    __slots__ = ("params",)

    def __init__(self, params: ParamsKey | None = None) -> None:
        self.params = params


@dataclass(frozen=True)
class SearchIndex:
    """One index version with its filter table and the policy its plans are made with (both built once per load)."""

    reader: IndexReader
    filters: FilterTable
    policy: SearchPolicy
    effort: Effort = field(default_factory=Effort)

    @classmethod
    def of(cls, reader: IndexReader, policy: SearchPolicy) -> SearchIndex:
        return cls(reader, FilterTable(reader.metadata_codes, reader.manifest.metadata), policy)

    def allowed_rows(self, query: Query) -> I64 | None:
        return self.filters.allowed_rows(query.filter) if query.filter is not None else None

    def excluded_rows(self, ids: Sequence[int | str]) -> I64:
        """Unique rows of the ids found in the index (unknown ids are ignored: nothing to exclude)."""
        if not ids:
            return NO_ROWS
        rows = self.reader.rows_of_ids(list(ids))
        return np.unique(rows[rows >= 0])

    def plan(self, query: Query) -> SearchPlan:
        return plan_search(
            self.reader,
            self.policy,
            query.k,
            exact=query.exact,
            allowed=self.allowed_rows(query),
            excluded=self.excluded_rows(query.exclude),
            params=query.params,
            defaults=self.effort.params,
        )

    def search(self, queries: Sequence[Query], plans: Sequence[SearchPlan] | None = None) -> list[Hits]:
        """Hits of each query, in order (plans: made by `plan` beforehand, e.g. to choose where to run)."""
        if plans is None:
            plans = [self.plan(query) for query in queries]
        if len(queries) == 1:
            return self._execute(plans, queries[0].vector[None])
        return self.search_matrix(np.stack([query.vector for query in queries]), plans)

    def search_matrix(self, xq: F32, plans: Sequence[SearchPlan]) -> list[Hits]:
        """Hits of each row of xq ((n, dim) float32) searched with its plan; rows may share one plan object (bulk
        scoring plans once for every user without exclusions)."""
        groups: dict[object, list[int]] = {}
        keys: dict[int, object] = {}  # group key of each distinct plan object, computed once
        for position, plan in enumerate(plans):
            key = keys.get(id(plan))
            if key is None:
                key = keys[id(plan)] = plan.group_key
            groups.setdefault(key, []).append(position)
        if len(groups) == 1:
            return self._execute(plans, xq)
        out: list[Hits] = [EMPTY] * len(plans)
        for positions in groups.values():
            for position, hits in zip(
                positions, self._execute([plans[p] for p in positions], xq[positions]), strict=True
            ):
                out[position] = hits
        return out

    def _execute(self, plans: Sequence[SearchPlan], xq: F32) -> list[Hits]:
        """One search for plans sharing a group key (one per row of xq), fetching the most any of them needs."""
        fetch = max(plan.fetch for plan in plans)
        found = self.reader.execute(plans[0], xq, fetch)
        # Rows holding padding (-1), found in one pass: faiss pads only a row's tail, so its last column tells.
        padded = (found.rows[:, -1] < 0).tolist() if found.rows.shape[1] else [False] * len(plans)
        out = []
        for plan, rows, scores, short in zip(plans, found.rows, found.scores, padded, strict=True):
            if plan.excluded.size or short:
                keep = rows >= 0
                if plan.excluded.size:
                    keep &= ~np.isin(rows, plan.excluded)
                rows, scores = rows[keep], scores[keep]
            out.append(Hits(rows[: plan.k], scores[: plan.k]))
        return out


EMPTY = Hits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
