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
        groups: dict[object, list[int]] = {}
        for position, plan in enumerate(plans):
            groups.setdefault(plan.group_key, []).append(position)
        out: list[Hits] = [EMPTY] * len(queries)
        for positions in groups.values():
            xq = np.stack([queries[p].vector for p in positions])
            for position, hits in zip(positions, self._execute([plans[p] for p in positions], xq), strict=True):
                out[position] = hits
        return out

    def _execute(self, plans: Sequence[SearchPlan], xq: F32) -> list[Hits]:
        """One search for plans sharing a group key (one per row of xq), fetching the most any of them needs."""
        fetch = max(plan.fetch for plan in plans)
        found = self.reader.execute(plans[0], xq, fetch)
        out = []
        for plan, rows, scores in zip(plans, found.rows, found.scores, strict=True):
            if plan.excluded.size:
                keep = (rows >= 0) & ~np.isin(rows, plan.excluded)
                rows, scores = rows[keep], scores[keep]
            elif rows.size and rows[-1] < 0:  # padding is only ever at the tail
                kept = int(np.count_nonzero(rows >= 0))
                rows, scores = rows[:kept], scores[:kept]
            out.append(Hits(rows[: plan.k], scores[: plan.k]))
        return out


EMPTY = Hits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
