"""One plan per query (index_format/plan.py): which method, rows, parameters and placement each kind of query gets,
and that executing a plan answers like brute force wherever the plan is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from api_helpers import Catalogue

from index_format import layout
from index_format.engine import SearchIndex
from index_format.plan import Method, SearchPolicy, plan_search
from index_format.query import Query, filter_key
from index_format.reader import IndexReader

K = 10


def open_reader(root: Path) -> IndexReader:
    return IndexReader.open(layout.resolve_current(root))


def test_unfiltered_ann_uses_the_tuned_params_and_runs_inline(hnsw_root: Path) -> None:
    reader = open_reader(hnsw_root)
    plan = plan_search(reader, SearchPolicy(), K)
    assert plan.method is Method.ANN and plan.inline and plan.kind == "ann"
    assert dict(plan.params) == reader.manifest.default_params
    own = plan_search(reader, SearchPolicy(), K, params=(("efSearch", 300),))
    assert dict(own.params) == {"efSearch": 300}  # the request's own parameter wins


def test_selective_filter_is_an_exact_scan_of_its_rows(hnsw_root: Path) -> None:
    reader = open_reader(hnsw_root)
    allowed = np.arange(0, reader.count, 50, dtype=np.int64)  # 2% of the rows
    plan = plan_search(reader, SearchPolicy(), K, allowed=allowed)
    assert plan.exact and plan.kind == "filtered" and plan.method is Method.NORM_SCAN
    assert plan.fetch == K


def test_broad_filter_goes_through_the_index_with_raised_effort(hnsw_root: Path) -> None:
    reader = open_reader(hnsw_root)
    allowed = np.arange(0, reader.count, 2, dtype=np.int64)  # half the rows
    policy = SearchPolicy(filter_exact_budget=0, param_limits={"efSearch": 10_000})
    plan = plan_search(reader, policy, K, allowed=allowed)
    assert plan.method is Method.ANN and not plan.inline and plan.kind == "filtered"
    assert dict(plan.params)["efSearch"] == 2 * reader.manifest.default_params["efSearch"]
    capped = plan_search(reader, SearchPolicy(filter_exact_budget=0, param_limits={"efSearch": 5}), K, allowed=allowed)
    assert dict(capped.params)["efSearch"] == reader.manifest.default_params["efSearch"]  # never below the tuned value


def test_exact_placement_follows_the_inline_budget(pruned_root: Path) -> None:
    reader = open_reader(pruned_root)
    assert plan_search(reader, SearchPolicy(), K, exact=True).inline
    tight = plan_search(reader, SearchPolicy(inline_work=reader.count * reader.dim - 1), K, exact=True)
    assert tight.exact and not tight.inline


def test_exact_method_by_index_kind(pruned_root: Path, ivf_root: Path, hnsw_root: Path) -> None:
    assert plan_search(open_reader(pruned_root), SearchPolicy(), K).method is Method.NORM_SCAN
    ivf = open_reader(ivf_root)  # keeps a row-ordered raw copy: never a full probe of its lists
    assert ivf.vectors is not None and plan_search(ivf, SearchPolicy(), K, exact=True).method is Method.NORM_SCAN
    hnsw = open_reader(hnsw_root)
    some = np.arange(0, hnsw.count, 3, dtype=np.int64)
    assert plan_search(hnsw, SearchPolicy(), K, exact=True, allowed=some).method is Method.NORM_SCAN


def test_fetch_covers_exclusions_and_never_exceeds_the_rows(hnsw_root: Path) -> None:
    reader = open_reader(hnsw_root)
    excluded = np.array([3, 5, 8], dtype=np.int64)
    assert plan_search(reader, SearchPolicy(), K, excluded=excluded).fetch == K + 3
    few = np.array([1, 2], dtype=np.int64)
    plan = plan_search(reader, SearchPolicy(), K, allowed=few)
    assert plan.fetch == 2
    empty = plan_search(reader, SearchPolicy(), K, allowed=np.empty(0, dtype=np.int64))
    assert empty.method is Method.NOTHING and empty.fetch == 0


@pytest.mark.parametrize("root_name", ["hnsw_root", "ivf_root", "ivfpq_root"])
def test_exact_plans_equal_brute_force_without_padding(
    root_name: str, request: pytest.FixtureRequest, str_catalogue: Catalogue
) -> None:
    """Every exact plan (plain, filtered, excluded, more k than rows) answers like brute force (tie-aware), with
    fewer than k results only when fewer rows qualify."""
    reader = open_reader(request.getfixturevalue(root_name))
    engine = SearchIndex.of(reader, SearchPolicy())
    vectors = np.asarray(str_catalogue.vectors, dtype=np.float64)
    categories = np.asarray(str_catalogue.categories)
    names = sorted(set(str_catalogue.categories))
    position = {id_: i for i, id_ in enumerate(str_catalogue.ids)}
    for q in str_catalogue.test_queries[:20]:
        for flt, exclude, k in (
            (None, (), K),
            ({"category": [names[0]]}, (), K),
            (None, tuple(str_catalogue.ids[:5]), K),
            ({"category": [names[1]]}, (), 10_000),
        ):
            query = Query(vector=q, k=k, exact=True, filter=filter_key(flt), exclude=exclude)
            hits = engine.search([query])[0]
            scores = vectors @ q.astype(np.float64)
            keep = np.ones(len(scores), dtype=bool) if flt is None else categories == flt["category"][0]
            keep &= ~np.isin(np.asarray(str_catalogue.ids), exclude)
            truth = np.sort(scores[keep])[::-1][:k]
            assert hits.rows.size == truth.size  # no padding: fewer only when fewer qualify
            assert (hits.rows >= 0).all()
            got = np.sort(scores[[position[id_] for id_ in reader.external_ids(hits.rows)]])[::-1]
            np.testing.assert_allclose(got, truth, rtol=1e-5, atol=1e-5)


def test_cached_plans_of_plain_queries_follow_the_effort_in_force(hnsw_root: Path) -> None:
    """SearchIndex keeps the plans of plain queries (engine._plain_plans): each equals a fresh plan, and a raised
    effort (api/effort.py replaces engine.effort.params) or another k, offset or exact gives another plan."""
    reader = open_reader(hnsw_root)
    engine = SearchIndex.of(reader, SearchPolicy())
    vector = np.ones(reader.dim, dtype=np.float32)
    first = engine.plan(Query(vector, K))
    assert engine.plan(Query(vector, K)) is first and first == plan_search(reader, SearchPolicy(), K)
    tuned = reader.manifest.default_params["efSearch"]
    engine.effort.params = (("efSearch", 2 * tuned),)
    raised = engine.plan(Query(vector, K))
    assert dict(raised.params) == {"efSearch": 2 * tuned}
    assert engine.plan(Query(vector, K, offset=3)).fetch == K + 3
    assert engine.plan(Query(vector, 5)).k == 5 and engine.plan(Query(vector, K, exact=True)).exact
    excluded = engine.plan(Query(vector, K, exclude=tuple(reader.external_ids(np.arange(2)))))
    assert excluded.fetch == K + 2 and excluded is not raised  # queries with options are planned each time
