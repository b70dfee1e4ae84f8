"""How one query is searched: every decision in one place, made once per request.

`plan_search` turns (a loaded index, what is asked, the `SearchPolicy`) into a `SearchPlan`: the method, the rows it
may return, the effective search parameters, how many results to fetch, whether the work is light enough for the
event loop, and the kind the metrics count. `IndexReader.execute` carries a plan out and decides nothing itself;
the HTTP service, the Python `Searcher` and the builder's recall measurements all search through plans.

Why each method (measured figures; the thresholds are `SearchPolicy` fields):
- a filter keeping few rows is searched exactly over just those rows: a graph walk or IVF probe ignores the filter
  and only drops results, so selective filters lose recall (HNSW, 0.4% of the rows allowed, efSearch 2048: recall@10
  0.77 on the 3,000-item test catalogue) while an exact scan of the allowed rows is exact and cheap (instacart
  departments, 37–6,424 of 48,688 rows × 384: 31–471 µs);
- exact search uses the compiled norm-ordered scan (index_format/norm_scan.py) wherever the index keeps its raw
  vectors in row order (every kind builds one): it scores only the allowed rows, and on gowalla_als it beat faiss's
  by-id path at every filter size measured (2% of the rows: 46k vs 37k queries/s; 20%: 18.7k vs 3.4k);
- broader filters go through the ANN index with an ID selector, its effort raised by 1/selectivity;
- exact work up to `inline_work` (rows × dim) runs on the event loop: measured with 2 workers on 2 cores (gowalla_als,
  41k × 64 = 2.6M), inline 3.1k req/s at c=64 against 2.0k through the thread pool.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from index_format.hidden import HiddenRows
    from index_format.reader import IndexReader

I64 = npt.NDArray[np.int64]
ParamsKey = tuple[tuple[str, int], ...]  # sorted (name, value) pairs: hashable, so plans can be grouped and cached

NO_ROWS: I64 = np.empty(0, dtype=np.int64)
NO_ROWS.flags.writeable = False

# Parameters that buy recall in proportion to the work done; raised for filters searched through the ANN index.
EFFORT_PARAMS = ("efSearch", "nprobe")

# Defaults of the thresholds (the module docstring says which measurement set each one).
FILTER_EXACT_FRACTION = 0.1
FILTER_EXACT_BUDGET = 4_000_000
GROUP_EXACT_BUDGET = 32_000_000
INLINE_WORK = 4_000_000
# Up to this share of the rows hidden, plans fetch a few more results and drop the hidden ones (the search itself is
# unchanged); beyond it, plans search around them (a faiss ID selector or an exact scan of the visible rows), which
# costs more per query. benchmarks/catalogue_changes.py (gowalla_als, 1% hidden, IVF nprobe 34) measured the IVF walk
# with the bitmap selector and the raised nprobe at ~+15% per search.
HIDDEN_DROP_FRACTION = 0.05


class Method(enum.Enum):
    ANN = "ann"  # the index's approximate search (with an ID selector when filtered)
    NORM_SCAN = "norm_scan"  # exact: rows in descending-norm order, stops at the Cauchy–Schwarz bound
    FLAT = "flat"  # exact: faiss's flat scan of the stored vectors
    FULL_PROBE = "full_probe"  # exact: an IVF without a row-ordered copy probes every list
    NOTHING = "nothing"  # no row can qualify (an empty filter, k = 0)


EXACT_METHODS = frozenset({Method.NORM_SCAN, Method.FLAT, Method.FULL_PROBE})


@dataclass(frozen=True)
class SearchPolicy:
    """The thresholds and limits plans are made with; built once per index load (not per request)."""

    filter_exact_fraction: float = FILTER_EXACT_FRACTION
    filter_exact_budget: int = FILTER_EXACT_BUDGET
    group_exact_budget: int = GROUP_EXACT_BUDGET
    inline_work: int = INLINE_WORK
    hidden_drop_fraction: float = HIDDEN_DROP_FRACTION
    param_limits: Mapping[str, int] = field(default_factory=dict)

    def filter_is_exact(self, allowed_rows: int, count: int, dim: int) -> bool:
        return allowed_rows <= self.filter_exact_fraction * count or allowed_rows * dim <= self.filter_exact_budget


DEFAULT_POLICY = SearchPolicy()


@dataclass(frozen=True)
class SearchPlan:
    method: Method
    k: int  # results wanted
    fetch: int  # results fetched: k plus the excluded rows that could take places, at most the rows available
    allowed: I64 | None  # ascending rows the search is restricted to (a filter); None: every row
    excluded: I64  # rows dropped from the results (the query's exclusions found in the index)
    params: ParamsKey  # effective ANN parameters (index defaults, raised for filters, then the request's own)
    inline: bool  # light enough to run on the event loop
    kind: str  # what the metrics count: ann, exact or filtered
    offset: int = 0  # best results skipped before the k returned (fetch counts them)
    min_score: float | None = None  # results scoring below this are dropped (never padded back)
    hidden: HiddenRows | None = None  # ANN without a filter: hidden rows skipped by the index's own selector
    delta_rows: I64 | None = None  # delta segment rows (index_format/delta.py) also scanned; None: no delta
    drop: HiddenRows | None = None  # hidden rows dropped from what the search returns (fetch widened for them)

    @property
    def exact(self) -> bool:
        return self.method in EXACT_METHODS

    @cached_property
    def returns_as_found(self) -> bool:
        """Whether the search's results are the answer as they are (nothing excluded, dropped, merged, skipped or
        cut by a threshold; padding aside). Cached: plans of plain queries are reused (SearchIndex.plan)."""
        return self.drop is None and self.delta_rows is None and self.only_drops_or_merges

    @cached_property
    def only_drops_or_merges(self) -> bool:
        """Whether the answer is the search's results with at most hidden rows dropped and the delta merged in (no
        exclusions, offset or threshold): the single-query fast path of a changed catalogue (engine._execute)."""
        return not self.excluded.size and not self.offset and self.min_score is None

    @property
    def group_key(self) -> tuple[Method, int, ParamsKey, int]:
        """Plans with equal keys (same method, same allowed rows, same parameters) are executed together in one
        vectorised search that fetches the most results any of them needs."""
        return (self.method, id(self.allowed), self.params, id(self.hidden))


def plan_search(
    reader: IndexReader,
    policy: SearchPolicy,
    k: int,
    *,
    exact: bool = False,
    allowed: I64 | None = None,
    excluded: I64 = NO_ROWS,
    params: ParamsKey = (),
    offset: int = 0,
    min_score: float | None = None,
    hidden: HiddenRows | None = None,
    defaults: ParamsKey | None = None,
    delta_rows: I64 | None = None,
) -> SearchPlan:
    """The plan of one query. allowed: ascending rows of a filter; excluded: unique rows to leave out; params: the
    request's own search parameters (validated), which win over the index defaults and any raised effort; offset:
    best results to skip; min_score: results below it are dropped; defaults: the ANN parameters in force (the
    manifest's unless the service raised them, api/effort.py).

    hidden (index_format/hidden.py) is left out like a filter, so results keep k rows and recall holds: a filter's
    rows lose their hidden ones; without a filter, when at most `hidden_drop_fraction` of the rows are hidden, the
    search fetches `hidden_margin` more results and drops the hidden ones (the engine searches around them, see
    `around_hidden`, for a query left short); more are searched around from the start: exact plans scan the visible
    rows, ANN plans skip hidden rows through the index's selector with effort raised by 1/(visible fraction), as
    for a filter. delta_rows: the delta segment rows the query may return (SearchIndex.delta_rows).
    """
    base = reader.default_params_key if defaults is None else defaults
    skip = drop = None
    if hidden is not None and hidden.count:
        if allowed is not None:
            allowed = hidden.visible_of(allowed)
        elif hidden.count <= policy.hidden_drop_fraction * reader.count:
            drop = hidden
        elif exact or reader.family == "flat":
            allowed = hidden.visible
        else:
            skip = hidden
    if allowed is not None:
        available = int(allowed.size)
    else:
        available = reader.count - (skip.count if skip is not None else 0)
    wanted = offset + k + int(excluded.size)
    if drop is not None:
        wanted += hidden_margin(drop, offset + k)
    fetch = min(wanted, available) if k > 0 else 0
    filtered = allowed is not None
    if fetch <= 0:
        kind = "filtered" if filtered else "ann"
        return SearchPlan(
            Method.NOTHING, k, 0, allowed, excluded, (), True, kind, offset, min_score, delta_rows=delta_rows
        )
    if exact or reader.family == "flat" or (filtered and policy.filter_is_exact(available, reader.count, reader.dim)):
        method = exact_method(reader, policy, allowed)
        scanned = reader.count if method is Method.FULL_PROBE else available  # a full probe reads every list
        inline = scanned * reader.dim <= policy.inline_work
        kind = "exact" if exact or reader.family == "flat" else "filtered"
        return SearchPlan(
            method, k, fetch, allowed, excluded, (), inline, kind, offset, min_score, None, delta_rows, drop
        )
    if allowed is None:
        if skip is not None:
            base = skip.raised_params(base, policy.param_limits)
        effective = base if not params else merged_params(base, params)
        return SearchPlan(
            Method.ANN, k, fetch, None, excluded, effective, True, "ann", offset, min_score, skip, delta_rows, drop
        )
    raised = raised_effort(dict(base), available / reader.count, policy.param_limits)
    effective = merged_params(tuple(sorted(raised.items())), params)
    return SearchPlan(
        Method.ANN, k, fetch, allowed, excluded, effective, False, "filtered", offset, min_score, None, delta_rows
    )


def hidden_margin(hidden: HiddenRows, wanted: int) -> int:
    """Results fetched beyond `wanted` so that, with hidden rows dropped afterwards, the query rarely falls short:
    twice the expected number of hidden rows among them, plus 2 (a query left short is searched again around the
    hidden rows, so the margin only trades a little fetch width against rare second searches)."""
    return math.ceil(2 * wanted * (1 - hidden.visible_fraction)) + 2


def around_hidden(reader: IndexReader, policy: SearchPolicy, plan: SearchPlan) -> SearchPlan:
    """The plan of a query whose dropped hidden rows left it short: the same search restricted to the visible rows
    (exact: a scan of them; ANN: the index's selector skipping the hidden ones, effort raised)."""
    hidden = plan.drop
    assert hidden is not None
    fetch = min(plan.offset + plan.k + int(plan.excluded.size), hidden.total - hidden.count)
    if plan.exact:
        return replace(
            plan, method=exact_method(reader, policy, hidden.visible), fetch=fetch, allowed=hidden.visible, drop=None
        )
    return replace(
        plan, fetch=fetch, hidden=hidden, drop=None, params=hidden.raised_params(plan.params, policy.param_limits)
    )


def grouped_scan_is_exact(
    reader: IndexReader, policy: SearchPolicy, exact: bool, allowed: I64 | None, budget: int | None = None
) -> bool:
    """Whether a grouped (per-category top-n) request is one exact scan of the allowed rows: when asked, on exact
    indexes, for small filters, and whenever rows × dim is within the budget (`group_exact_budget` by default;
    api/grouping.py explains the measurement)."""
    available = reader.count if allowed is None else int(allowed.size)
    budget = policy.group_exact_budget if budget is None else budget
    return (
        exact
        or reader.family == "flat"
        or available * reader.dim <= budget
        or (allowed is not None and policy.filter_is_exact(available, reader.count, reader.dim))
    )


def exact_method(reader: IndexReader, policy: SearchPolicy, allowed: I64 | None) -> Method:
    """The fastest exact method this index offers for these rows: the norm-ordered scan scores only the allowed
    rows and stops at the Cauchy–Schwarz bound, so it serves every filtered exact search and, unless the builder
    measured faiss's flat kernel faster on this data (unit norms: nothing to prune), the unfiltered ones."""
    if reader.vectors is None:
        return Method.FULL_PROBE
    if allowed is None and reader.manifest.exact_method == "faiss_flat" and reader.has_flat_storage:
        return Method.FLAT
    return Method.NORM_SCAN


def merged_params(defaults: ParamsKey, params: ParamsKey) -> ParamsKey:
    if not params:
        return defaults
    return tuple(sorted({**dict(defaults), **dict(params)}.items()))


def raised_effort(params: dict[str, int], fraction: float, limits: Mapping[str, int]) -> dict[str, int]:
    """Scale efSearch / nprobe by 1/fraction (capped by the configured maximum): with a filter keeping a fraction
    f of the rows, a search visiting n candidates finds about f·n allowed ones."""
    out = dict(params)
    for name in EFFORT_PARAMS:
        if name in out:
            scaled = math.ceil(out[name] / max(fraction, 1e-9))
            out[name] = max(out[name], min(scaled, limits.get(name, scaled)))
    return out


def params_key(params: Mapping[str, int] | None) -> ParamsKey:
    return tuple(sorted((params or {}).items()))
