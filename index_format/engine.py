"""Queries → plans → results, for one loaded index version: the search core shared by the HTTP service and the
Python `Searcher`.

Queries whose plans agree (method, rows fetched, allowed rows, parameters) are executed together in one vectorised
call. Exclusions are applied by fetching k + (number of excluded products found in the index) and dropping them, so
queries with different exclusions still share a search. Results never hold padding: fewer than k only when fewer
rows qualify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index_format import layout
from index_format.availability import AvailabilityError
from index_format.delta import DeltaSegment
from index_format.filters import FilterTable
from index_format.hidden import HiddenRows, read_hidden_rows
from index_format.norm_scan import FINISH_IN_KERNEL, finish_one
from index_format.plan import NO_ROWS, ParamsKey, SearchPlan, SearchPolicy, around_hidden, plan_search
from index_format.query import Query
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
PLAIN_PLANS_KEPT = 1024  # bounds the plan cache (k, offset and effort are bounded; this only caps the dict)


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
    """One index version with its filter table and the policy its plans are made with (both built once per load),
    and the rows hidden (index_format/hidden.py; replaced as a whole when the availability file changes)."""

    reader: IndexReader
    filters: FilterTable
    policy: SearchPolicy
    hidden: HiddenRows | None = None
    delta: DeltaSegment | None = None  # products added since the full build (index_format/delta.py)
    delta_visible: I64 | None = None  # ascending delta rows not hidden (None without a delta)
    effort: Effort = field(default_factory=Effort)  # the ANN parameters in force (api/effort.py)
    # Plans of queries without a filter, exclusions, parameters or threshold, by (k, exact, offset, effort): most
    # requests; planning one costs ~2.7 µs of a ~70 µs /infer (benchmarks.asgi_cost). Plans are immutable.
    _plain_plans: dict[tuple[object, ...], SearchPlan] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(
        cls,
        reader: IndexReader,
        policy: SearchPolicy,
        hidden: HiddenRows | None = None,
        delta: DeltaSegment | None = None,
    ) -> SearchIndex:
        table = FilterTable(reader.metadata_codes, reader.manifest.metadata)
        visible = _delta_visible(delta, hidden)
        return cls(reader, table, policy, hidden, delta, visible)

    @classmethod
    def with_changes(cls, reader: IndexReader, policy: SearchPolicy, root: Path) -> SearchIndex:
        """`of` with the version's delta segment (products added since the full build) and the products hidden at
        ROOT (availability.json): what the service and the Python API search. Raises layout.FormatError when the
        availability file cannot be applied."""
        delta = DeltaSegment.open(reader.version_dir, reader.manifest)
        try:
            hidden = read_hidden_rows(reader, root, delta.replaced if delta is not None else None)
        except AvailabilityError as exc:
            raise layout.FormatError(f"cannot apply the hidden items: {exc}") from exc
        return cls.of(reader, policy, hidden, delta)

    def with_hidden(self, hidden: HiddenRows) -> SearchIndex:
        return replace(self, hidden=hidden, delta_visible=_delta_visible(self.delta, hidden))

    # ---- rows of the version: main rows, then delta rows ----------------------------------------------------

    def _in_delta(self, rows: I64) -> npt.NDArray[np.bool_] | None:
        """Which of these rows are delta rows; None when none is (no delta, or main rows only: the common case)."""
        delta = self.delta
        if delta is None or not rows.size:
            return None
        # A query's ~10 rows: Python's max of the list; numpy's reduction costs ~1.5 µs per call on a few rows.
        highest = max(rows.ravel().tolist()) if rows.size <= 64 else int(rows.max())
        return None if highest < delta.base else rows >= delta.base

    def external_ids(self, rows: I64) -> list[Any]:
        in_delta = self._in_delta(rows)
        if in_delta is None:
            return self.reader.external_ids(rows)
        assert self.delta is not None
        out = np.empty(rows.size, dtype=object)
        out[~in_delta] = self.reader.external_ids(rows[~in_delta])
        out[in_delta] = self.delta.external_ids(rows[in_delta] - self.delta.base)
        return out.tolist()

    def id_array(self, rows: I64) -> npt.NDArray[Any]:
        """The stored ids of rows of the version as one array (int64, or bytes for str ids: decode to str), main rows
        from the index, delta rows from the delta segment; for building columns without a Python object per id."""
        in_delta = self._in_delta(rows)
        if in_delta is None:
            return np.asarray(self.reader.ids[rows])
        assert self.delta is not None
        main_ids, delta_ids = self.reader.ids[rows[~in_delta]], self.delta.ids[rows[in_delta] - self.delta.base]
        out = np.empty(rows.size, dtype=np.result_type(main_ids.dtype, delta_ids.dtype))
        out[~in_delta] = main_ids
        out[in_delta] = delta_ids
        return out

    def vectors_of(self, rows: I64) -> F32:
        """The raw vectors of rows of the version (main rows from the index's row-ordered copy, delta rows from the
        delta segment), (len(rows), dim) float32."""
        main = self.reader.vectors
        assert main is not None, "this index keeps no row-ordered raw vectors"
        in_delta = self._in_delta(rows)
        if in_delta is None:
            return np.asarray(main[rows], dtype=np.float32)
        assert self.delta is not None
        out = np.empty((rows.size, self.reader.dim), dtype=np.float32)
        out[~in_delta] = main[rows[~in_delta]]
        out[in_delta] = self.delta.vectors[rows[in_delta] - self.delta.base]
        return out

    def metadata_codes_of(self, field_name: str, rows: I64) -> list[int]:
        """The code of `field_name` (an index into manifest.metadata[field_name], -1: none) of each row."""
        main = self.reader.metadata_codes[field_name]
        in_delta = self._in_delta(rows)
        if in_delta is None:
            return main[rows].tolist()  # type: ignore[no-any-return]
        assert self.delta is not None
        codes = np.empty(rows.size, dtype=np.int64)
        codes[~in_delta] = main[rows[~in_delta]]
        codes[in_delta] = self.delta.metadata_codes[field_name][rows[in_delta] - self.delta.base]
        return codes.tolist()

    def delta_rows(self, query: Query) -> I64 | None:
        """The delta rows a query may return (filter, exclusions and hidden ids applied); None without a delta."""
        delta, rows = self.delta, self.delta_visible
        if delta is None or rows is None:
            return None
        if query.filter is not None:
            for field_name, names in query.filter:
                code_of = {name: code for code, name in enumerate(self.reader.manifest.metadata[field_name])}
                codes = np.array([code_of[name] for name in names if name in code_of], dtype=np.int32)
                rows = rows[np.isin(delta.metadata_codes[field_name][rows], codes)]
        if query.exclude:
            excluded = delta.local_rows_of_ids(list(query.exclude))
            rows = rows[~np.isin(rows, excluded[excluded >= 0])]
        return rows

    @property
    def hidden_count(self) -> int:
        return self.hidden.count if self.hidden is not None else 0

    def allowed_rows(self, query: Query) -> I64 | None:
        """The filter's rows (None: no filter); hidden rows are left out by the plan, see `visible_rows`."""
        return self.filters.allowed_rows(query.filter) if query.filter is not None else None

    def visible_rows(self, query: Query) -> I64 | None:
        """The rows a query may return: the filter's rows without the hidden ones (None: every row). For searches
        that are not planned by `plan` (grouped scans, exact cosine)."""
        allowed = self.allowed_rows(query)
        if self.hidden is None or not self.hidden.count:
            return allowed
        return self.hidden.visible if allowed is None else self.hidden.visible_of(allowed)

    def is_hidden(self, rows: I64) -> npt.NDArray[np.bool_]:
        if self.hidden is None or not self.hidden.count:
            return np.zeros(rows.shape, dtype=bool)
        return self.hidden.mask[rows]

    def excluded_rows(self, ids: Sequence[int | str]) -> I64:
        """Unique rows of the ids found in the index (unknown ids are ignored: nothing to exclude)."""
        if not ids:
            return NO_ROWS
        rows = self.reader.rows_of_ids(list(ids))
        return np.unique(rows[rows >= 0])

    def plan(self, query: Query) -> SearchPlan:
        if query.filter is not None or query.exclude or query.params or query.score_threshold is not None:
            return self._plan(query)
        key = (query.k, query.exact, query.offset, self.effort.params)
        plan = self._plain_plans.get(key)
        if plan is None:
            if len(self._plain_plans) >= PLAIN_PLANS_KEPT:
                self._plain_plans.clear()
            plan = self._plain_plans[key] = self._plan(query)
        return plan

    def _plan(self, query: Query) -> SearchPlan:
        return plan_search(
            self.reader,
            self.policy,
            query.k,
            exact=query.exact,
            allowed=self.allowed_rows(query),
            excluded=self.excluded_rows(query.exclude),
            params=query.params,
            offset=query.offset,
            min_score=query.score_threshold,
            hidden=self.hidden,
            defaults=self.effort.params,
            delta_rows=self.delta_rows(query),
        )

    def search(self, queries: Sequence[Query], plans: Sequence[SearchPlan] | None = None) -> list[Hits]:
        """Hits of each query, in order (plans: made by `plan` beforehand, e.g. to choose where to run)."""
        if plans is None:
            plans = [self.plan(query) for query in queries]
        if len(queries) == 1:
            return self._execute(plans, np.ascontiguousarray(queries[0].vector, dtype=np.float32)[None])
        return self.search_matrix(np.stack([query.vector for query in queries]), plans)

    def search_matrix(self, xq: F32, plans: Sequence[SearchPlan]) -> list[Hits]:
        """Hits of each row of xq ((n, dim) float32) searched with its plan; rows may share one plan object (bulk
        scoring plans once for every user without exclusions)."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)  # the delta's scan reads query rows in place
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
        fetch = plans[0].fetch if len(plans) == 1 else max(plan.fetch for plan in plans)
        found = self.reader.execute(plans[0], xq, fetch)
        if len(plans) == 1:  # the common single query, without a pass over all rows for padding
            plan, rows, scores = plans[0], found.rows[0], found.scores[0]
            short = bool(rows.size) and rows[-1] < 0
            if not short and plan.returns_as_found:  # nothing to drop or merge
                return [Hits(rows, scores)]
            if plan.only_drops_or_merges and FINISH_IN_KERNEL:  # a changed catalogue's common query: one C call
                finished = self._finish_in_kernel(plan, xq[0], rows, scores)
                if finished is not None:
                    return [finished]
            return [self._finish(plan, xq, 0, rows, scores, short)]
        # Rows holding padding (-1), found in one pass: faiss pads only a row's tail, so its last column tells.
        padded = (found.rows[:, -1] < 0).tolist() if found.rows.shape[1] else [False] * len(plans)
        return [
            self._finish(plan, xq, i, rows, scores, short)
            for i, (plan, rows, scores, short) in enumerate(zip(plans, found.rows, found.scores, padded, strict=True))
        ]

    def _finish_in_kernel(self, plan: SearchPlan, q: F32, rows: I64, scores: F32) -> Hits | None:
        """`_finish` for a plan that only drops hidden rows and merges the delta, done by the kernel (norm_scan.
        finish_one); None when hidden rows left it short (the general path searches again around them)."""
        delta = None
        if plan.delta_rows is not None and plan.delta_rows.size:
            assert self.delta is not None
            subset = None if plan.delta_rows.size == self.delta.count else plan.delta_rows
            delta = (self.delta.vectors, self.delta.norms, subset, self.delta.base)
        hidden = plan.drop.mask if plan.drop is not None else None
        found = finish_one(rows, scores, plan.k, hidden, delta, q)
        return None if found is None else Hits(found[1], found[0])

    def _finish(self, plan: SearchPlan, xq: F32, i: int, rows: I64, scores: F32, short: bool) -> Hits:
        """A plan's answer from what its search fetched (row i of xq): exclusions and hidden rows dropped, the
        delta merged in, the offset skipped, k kept, the threshold applied."""
        keep = _kept(plan, rows, short)
        if keep is not None:
            if plan.drop is not None and not short and int(np.count_nonzero(keep)) < plan.offset + plan.k:
                # Too many hidden rows among the results: search again around them (rare: see hidden_margin).
                return self._execute([around_hidden(self.reader, self.policy, plan)], xq[i : i + 1])[0]
            rows, scores = rows[keep], scores[keep]
        if plan.delta_rows is not None and plan.delta_rows.size:
            rows, scores = self._with_delta(plan, xq[i], rows, scores)
        if plan.offset:
            rows, scores = rows[plan.offset :], scores[plan.offset :]
        rows, scores = rows[: plan.k], scores[: plan.k]
        if plan.min_score is not None:  # scores are best first: the qualifying ones are a prefix
            kept = int(np.count_nonzero(scores >= plan.min_score))
            rows, scores = rows[:kept], scores[:kept]
        return Hits(rows, scores)

    def _with_delta(self, plan: SearchPlan, q: F32, rows: I64, scores: F32) -> tuple[I64, F32]:
        """Main results merged with the delta rows that make the cut, exactly (ties: main rows first)."""
        assert self.delta is not None and plan.delta_rows is not None
        wanted = plan.offset + plan.k
        if rows.size >= wanted:  # the common case: the kernel merges the delta into these results in place
            merged_scores, merged_rows = scores[:wanted].copy(), rows[:wanted].copy()
            self.delta.merge_into(q, merged_scores, merged_rows, plan.delta_rows)
            return merged_rows, merged_scores
        d_scores, d_rows = self.delta.top(q, wanted, plan.delta_rows)
        if not d_rows.size:
            return rows, scores
        all_rows = np.concatenate([rows, d_rows])
        all_scores = np.concatenate([scores, d_scores])
        order = np.argsort(-all_scores, kind="stable")
        return all_rows[order], all_scores[order]


def _kept(plan: SearchPlan, rows: I64, short: bool) -> npt.NDArray[np.bool_] | None:
    """Which fetched rows a plan keeps (padding, its exclusions and dropped hidden rows out); None: all of them."""
    if not (short or plan.excluded.size or plan.drop is not None):
        return None
    if short or plan.excluded.size:
        keep = rows >= 0
        if plan.excluded.size:
            keep &= ~np.isin(rows, plan.excluded)
        if plan.drop is not None:
            keep &= ~plan.drop.mask[np.maximum(rows, 0)]
        return keep
    assert plan.drop is not None
    hidden = plan.drop.mask[rows]
    return ~hidden if hidden.any() else None


def _delta_visible(delta: DeltaSegment | None, hidden: HiddenRows | None) -> I64 | None:
    if delta is None:
        return None
    rows = np.arange(delta.count, dtype=np.int64)
    if hidden is not None and hidden.ids:
        found = delta.local_rows_of_ids(list(hidden.ids))
        rows = rows[~np.isin(rows, found[found >= 0])]
    return rows


EMPTY = Hits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
