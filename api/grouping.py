"""Per-category top-n (`"group_by"` in /infer and /batch): validation, search and the response body.

Answer: the best `groups` categories of the field, ranked by their best product's score (ties: category name), each
with its best `group_size` products (ties: larger norm first). Two ways to find it:

- exact: one norm-ordered scan of the (allowed) rows keeping every category's best (`index_format.grouped_scan`).
  Used for `exact: true`, exact indexes, small filters, and whenever the (allowed) rows × dim is at most
  `RECSYS_GROUP_EXACT_BUDGET` (default 32M, so every catalogue up to ~80k × 384 or 500k × 64);
- approximate, for larger catalogues: the ANN index is over-fetched (`fetch` results), the categories found are
  ranked by their best hit, and the top `CANDIDATE_FACTOR × groups` of them are scanned exactly (the same scan,
  restricted to their rows); if they hold more than `CANDIDATE_FRACTION` of the rows, everything is scanned. Every
  returned group equals exact per-category search; a true best category none of whose products the over-fetch
  found is the only possible miss.

Why (benchmarks/group_by.py on instacart_products, 48,688 × 384, 134 aisles, 21 departments, one thread): the exact
scan reads every row (unit norms: nothing to prune) in ~3 ms through faiss's kernel; the approximate path saves
about half of that but its category recall saturated at 0.95–0.99 (HNSW misses products far down a long
over-fetch; 400 or 800 results, or scanning every category found, did not reach the index's stated recall 0.99).
Results in benchmarks/results/group_by.json and api/README_API.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from api.errors import ApiError, Problem, problem
from api.index_state import LoadedIndex
from api.schemas import GROUP_FIELDS, OPTION_FIELDS, RequestRules, SearchRequest, parse_batch, parse_infer
from api.service import Recommendation, recommend
from api.settings import Settings
from index_format.grouped_scan import Group, grouped_scan, select_groups
from index_format.plan import SearchPlan, grouped_scan_is_exact, plan_search
from index_format.reader import IndexReader
from index_format.stored import StoredVectors

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DEFAULT_GROUP_SIZE = 3
DEFAULT_GROUPS = 10
# Approximate path: ANN results fetched per needed product, and the floor of that over-fetch.
FETCH_PER_ITEM = 4
MIN_FETCH = 200
CANDIDATE_FACTOR = 4  # categories searched exactly per requested group
CANDIDATE_FRACTION = 0.5  # above this share of the allowed rows, scan them all (exact, and no slower)


@dataclass(frozen=True)
class GroupSpec:
    field: str
    group_size: int
    groups: int


@dataclass(frozen=True)
class GroupTuning:
    """When the approximate path is used, and its knobs (module defaults; the benchmark varies them)."""

    exact_budget: int  # rows × dim up to which one exact scan answers (RECSYS_GROUP_EXACT_BUDGET)
    fetch_per_item: int = FETCH_PER_ITEM
    min_fetch: int = MIN_FETCH
    candidate_factor: int = CANDIDATE_FACTOR
    candidate_fraction: float = CANDIDATE_FRACTION

    @classmethod
    def of(cls, settings: Settings) -> GroupTuning:
        return cls(exact_budget=settings.group_exact_budget)


Item = tuple[SearchRequest, GroupSpec | None]  # a /batch item: grouped when the spec is not None


def wants_groups(body: Any) -> bool:
    """Whether a /infer body (an object) or a /batch body (an array) uses any grouping field."""
    if isinstance(body, dict):
        return any(key in body for key in GROUP_FIELDS)
    if isinstance(body, list):
        return any(isinstance(item, dict) and any(key in item for key in GROUP_FIELDS) for item in body)
    return False


# ---- validation ----------------------------------------------------------------------------------------------------


def parse_grouped_infer(body: Any, rules: RequestRules) -> tuple[SearchRequest, GroupSpec]:
    """Validate a grouped /infer body: the usual fields (except `k`) plus group_by, group_size and groups."""
    problems: list[Problem] = []
    spec = _group_spec(body, [], rules, problems)
    try:
        parsed = parse_infer(_without_group_fields(body), rules)
    except ApiError as error:
        if error.status != 422 or not isinstance(error.detail, list):
            raise
        problems = error.detail + problems
        raise ApiError(422, problems) from None
    if problems or spec is None:
        raise ApiError(422, problems)
    return parsed, spec


def parse_mixed_batch(body: list[Any], rules: RequestRules, max_batch: int) -> list[Item]:
    """Validate a /batch body in which some items group; problems carry the item's position first in `loc`."""
    problems: list[Problem] = []
    stripped = [_without_group_fields(item) for item in body]
    try:
        parsed = parse_batch(stripped, rules, max_batch)
    except ApiError as error:
        if error.status != 422 or not isinstance(error.detail, list):
            raise
        problems = list(error.detail)
        parsed = []
    specs: list[GroupSpec | None] = []
    for position, item in enumerate(body):
        grouped = isinstance(item, dict) and any(key in item for key in GROUP_FIELDS)
        specs.append(_group_spec(item, [position], rules, problems) if grouped else None)
    if problems:
        problems.sort(key=lambda p: p["loc"][0] if p["loc"] else -1)
        raise ApiError(422, problems)
    return list(zip(parsed, specs, strict=True))


def _without_group_fields(item: Any) -> Any:
    if not isinstance(item, dict) or not any(key in item for key in GROUP_FIELDS):
        return item
    return {key: value for key, value in item.items() if key not in GROUP_FIELDS and key != "k"}


def _group_spec(raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]) -> GroupSpec | None:
    if not isinstance(raw, dict):
        return None  # parse_infer / parse_batch report it
    before = len(problems)
    if "k" in raw:
        message = "k does not apply with group_by: use group_size (products per category) and groups (categories)"
        problems.append(problem([*loc, "k"], message, "extra_field"))
    for key in OPTION_FIELDS:
        if key in raw:
            problems.append(problem([*loc, key], f"{key} does not apply with group_by", "extra_field"))
    field_name = raw.get("group_by")
    choices = ", ".join(sorted(rules.metadata)) or "none"
    if "group_by" not in raw:
        message = "field required when group_size or groups is given: a metadata field to group by"
        problems.append(problem([*loc, "group_by"], message, "missing"))
    elif not isinstance(field_name, str):
        problems.append(problem([*loc, "group_by"], f"expected a string (one of: {choices})", "type_error"))
    elif field_name not in rules.metadata:
        problems.append(problem([*loc, "group_by"], f"unknown field; this index has: {choices}", "value_error"))
    group_size = _count(raw, "group_size", DEFAULT_GROUP_SIZE, loc, rules.max_k, problems)
    groups = _count(raw, "groups", DEFAULT_GROUPS, loc, rules.max_k, problems)
    if len(problems) > before or group_size is None or groups is None or not isinstance(field_name, str):
        return None
    return GroupSpec(field_name, group_size, groups)


def _count(
    raw: dict[str, Any], key: str, default: int, loc: list[str | int], high: int, problems: list[Problem]
) -> int | None:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(problem([*loc, key], "expected an integer", "type_error"))
        return None
    if not 1 <= value <= high:
        problems.append(problem([*loc, key], f"must be between 1 and {high}, got {value}", "value_error"))
        return None
    return value


# ---- search ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupPlan:
    """How one grouped request is searched, decided once (`plan_grouped`)."""

    exact: bool  # one exact grouped scan of the allowed rows; else categories found by an over-fetched ANN search
    allowed: I64 | None  # the filter's rows (None: every row); empty: nothing can qualify
    excluded: I64
    fetch: SearchPlan | None  # the over-fetch of the approximate path
    tuning: GroupTuning
    kind: str = "grouped"


def plan_grouped(loaded: LoadedIndex, request: SearchRequest, spec: GroupSpec, tuning: GroupTuning) -> GroupPlan:
    engine = loaded.engine
    allowed = engine.visible_rows(request)  # hidden rows are never grouped
    excluded = engine.excluded_rows(request.exclude)
    exact = grouped_scan_is_exact(engine.reader, engine.policy, request.exact, allowed, tuning.exact_budget)
    if exact or (allowed is not None and allowed.size == 0):
        return GroupPlan(True, allowed, excluded, None, tuning)
    wanted = max(tuning.min_fetch, tuning.fetch_per_item * spec.groups * spec.group_size)
    fetch = plan_search(engine.reader, engine.policy, wanted, allowed=allowed, excluded=excluded, params=request.params)
    return GroupPlan(False, allowed, excluded, fetch, tuning)


def plan_items(loaded: LoadedIndex, items: list[Item], tuning: GroupTuning) -> list[SearchPlan | GroupPlan]:
    """The plan of each /batch item: grouped items get a group plan, the others a search plan."""
    return [
        loaded.engine.plan(request) if spec is None else plan_grouped(loaded, request, spec, tuning)
        for request, spec in items
    ]


def grouped_body(loaded: LoadedIndex, request: SearchRequest, spec: GroupSpec, plan: GroupPlan) -> dict[str, Any]:
    """The response object of one grouped request."""
    reader = loaded.reader
    names = reader.manifest.metadata[spec.field]
    found = search_groups(loaded, request, spec, plan)
    return {
        "name": request.name,
        "group_by": spec.field,
        "groups": [
            {"category": names[group.code], "recommendations": _recommendations(loaded, group)} for group in found
        ],
    }


def batch_bodies(loaded: LoadedIndex, items: list[Item], plans: list[SearchPlan | GroupPlan]) -> list[dict[str, Any]]:
    """Responses of a mixed /batch, in order: plain items are searched together as usual, grouped ones one by one."""
    plain = [position for position, (_, spec) in enumerate(items) if spec is None]
    plain_plans = [plans[p] for p in plain]
    assert all(isinstance(plan, SearchPlan) for plan in plain_plans)
    answers = recommend(loaded, [items[p][0] for p in plain], plain_plans)  # type: ignore[arg-type]
    out: list[dict[str, Any]] = [{} for _ in items]
    for position, recommendations in zip(plain, answers, strict=True):
        out[position] = {"name": items[position][0].name, "recommendations": recommendations}
    for position, ((request, spec), plan) in enumerate(zip(items, plans, strict=True)):
        if spec is not None and isinstance(plan, GroupPlan):
            out[position] = grouped_body(loaded, request, spec, plan)
    return out


def search_groups(loaded: LoadedIndex, request: SearchRequest, spec: GroupSpec, plan: GroupPlan) -> list[Group]:
    delta_rows = loaded.engine.delta_rows(request)
    with_delta = delta_rows is not None and delta_rows.size > 0
    allowed = plan.allowed
    if allowed is not None and allowed.size == 0:
        found: list[Group] = []
    else:
        if plan.fetch is not None:
            candidates = _candidate_rows(loaded, request, spec, plan.fetch, plan.tuning, allowed)
            if candidates is not None:
                allowed = candidates
        # With a delta segment, every category's best main products are merged with the delta's.
        every = replace(spec, groups=len(loaded.reader.manifest.metadata[spec.field])) if with_delta else spec
        found = exact_groups(loaded.reader, request.vector, every, allowed, plan.excluded)
    if not with_delta:
        return found
    assert delta_rows is not None
    return _with_delta_groups(loaded, request.vector, spec, found, delta_rows)


def _with_delta_groups(
    loaded: LoadedIndex, q: F32, spec: GroupSpec, found: list[Group], delta_rows: I64
) -> list[Group]:
    """The main index's groups (every category) merged with the delta segment's products (index_format/delta.py),
    then the best `groups` categories chosen as for the main index alone."""
    delta = loaded.engine.delta
    assert delta is not None
    main_rows = np.concatenate([g.rows for g in found]) if found else np.empty(0, np.int64)
    main_scores = np.concatenate([g.scores for g in found]) if found else np.empty(0, np.float32)
    main_codes = np.concatenate([np.full(g.rows.size, g.code) for g in found]) if found else np.empty(0, np.int64)
    delta_scores = (np.asarray(delta.vectors)[delta_rows] @ q).astype(np.float32)
    delta_codes = np.asarray(delta.metadata_codes[spec.field])[delta_rows]
    rows = np.concatenate([main_rows, delta_rows + delta.base])
    scores = np.concatenate([main_scores, delta_scores]).astype(np.float32)
    codes = np.concatenate([main_codes, delta_codes]).astype(np.int64)
    n_codes = len(loaded.reader.manifest.metadata[spec.field])
    picked = select_groups(scores, codes, spec.group_size, spec.groups, n_codes)
    return [Group(g.code, g.scores, rows[g.rows]) for g in picked]


def exact_groups(reader: IndexReader, q: F32, spec: GroupSpec, allowed: I64 | None, excluded: I64) -> list[Group]:
    """Exact grouped top-n over the (allowed) rows, excluded rows left out."""
    codes = reader.metadata_codes[spec.field]
    n_codes = len(reader.manifest.metadata[spec.field])
    if reader.vectors is not None:
        found, _ = grouped_scan(
            reader.vectors, reader.norms, codes, n_codes, q, spec.group_size, spec.groups, allowed, excluded
        )
        return found
    # IVF without row-ordered vectors: every exact score from a full probe, then the same selection.
    scores = StoredVectors(reader).scores(q, allowed)
    rows = np.arange(reader.count, dtype=np.int64) if allowed is None else allowed
    scores[np.isin(rows, excluded)] = -np.inf
    picked = select_groups(scores, np.asarray(codes)[rows], spec.group_size, spec.groups, n_codes)
    return [Group(g.code, g.scores, rows[g.rows]) for g in picked]


def _candidate_rows(
    loaded: LoadedIndex,
    request: SearchRequest,
    spec: GroupSpec,
    fetch: SearchPlan,
    tuning: GroupTuning,
    allowed: I64 | None,
) -> I64 | None:
    """Rows of the categories the over-fetched ANN search ranks best, or None (scan everything) when the hits name
    fewer than `groups` categories or those categories hold most of the rows."""
    reader = loaded.reader
    hits = loaded.engine.search([request], [fetch])[0]
    rows = hits.rows
    codes = np.asarray(reader.metadata_codes[spec.field])[rows]
    rows, codes = rows[codes >= 0], codes[codes >= 0]
    # Hits are best first, so a category's first hit is its best: rank categories by first appearance.
    distinct, first = np.unique(codes, return_index=True)
    ranked = distinct[np.argsort(first, kind="stable")][: tuning.candidate_factor * spec.groups]
    if ranked.size < spec.groups:
        return None  # the hits name too few categories: the others' best products are unknown
    names = reader.manifest.metadata[spec.field]
    candidate = loaded.filters.fields[spec.field].rows(tuple(names[c] for c in ranked.tolist()))
    if allowed is not None:
        candidate = np.intersect1d(candidate, allowed, assume_unique=True)
    available = reader.count if allowed is None else allowed.size
    if candidate.size > tuning.candidate_fraction * available:
        return None
    return candidate


def _recommendations(loaded: LoadedIndex, group: Group) -> list[Recommendation]:
    ids = loaded.engine.external_ids(group.rows)
    return [{"id": id_, "score": score} for id_, score in zip(ids, group.scores, strict=True)]
