"""Per-category top-n (`group_by` in /infer and /batch) against numpy brute force on seeded data: exact paths equal
it (ties included), the approximate path returns exact groups and meets the index's stated recall, small
categories, filters, exclusions, validation, /index category counts and the OpenAPI document."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import Catalogue, assert_same_answer
from feature_catalogue import (
    MIRRORS,
    PAIR,
    SOLO,
    TIE_RTOL,
    TWINS,
    FeatureCatalogue,
    assert_group_exact,
    assert_groups_equal,
    build_feature_index,
    grouped_truth,
    make_feature_catalogue,
)
from openapi_spec_validator import validate
from starlette.testclient import TestClient

import api.grouping
from api.schemas import SearchRequest
from index_format import layout

ClientFactory = Callable[..., TestClient]


@pytest.fixture(scope="module")
def catalogue() -> FeatureCatalogue:
    return make_feature_catalogue()


@pytest.fixture(scope="module")
def roots(catalogue: FeatureCatalogue, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: build_feature_index(catalogue, tmp_path_factory.mktemp(kind), kind) for kind in ("pruned", "hnsw")}


@pytest.fixture(scope="module")
def pruned(client_factory: ClientFactory, roots: dict[str, Path]) -> TestClient:
    return client_factory(roots["pruned"])


@pytest.fixture(scope="module")
def hnsw(client_factory: ClientFactory, roots: dict[str, Path]) -> TestClient:
    return client_factory(roots["hnsw"])


@pytest.fixture(scope="module")
def hnsw_ann(client_factory: ClientFactory, roots: dict[str, Path]) -> TestClient:
    """group_exact_budget 0: the approximate path even for this small catalogue (by default it is scanned)."""
    return client_factory(roots["hnsw"], group_exact_budget=0)


def body(name: str, q: Any, **options: Any) -> dict[str, Any]:
    return {"name": name, "vector": [float(v) for v in q], **options}


def grouped(client: TestClient, payload: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/infer", json=payload)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["name"] == payload["name"] and answer["group_by"] == payload["group_by"]
    groups: list[dict[str, Any]] = answer["groups"]
    return groups


# ---- results against brute force ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "exact"), [("pruned", False), ("hnsw", True)])
@pytest.mark.parametrize("field", ["category", "shelf"])
def test_exact_paths_equal_brute_force(
    index: str, exact: bool, field: str, request: pytest.FixtureRequest, catalogue: FeatureCatalogue
) -> None:
    client = request.getfixturevalue(index)
    for i, q in enumerate(catalogue.queries[100:140]):
        group_size, groups = (1, 3, 5)[i % 3], (1, 4, 10, 40)[i % 4]
        payload = body(f"u{i}", q, group_by=field, group_size=group_size, groups=groups)
        if exact:
            payload["exact"] = True
        got = grouped(client, payload)
        truth = grouped_truth(catalogue, q, field, group_size, groups)
        assert_groups_equal(catalogue, q, got, truth, field, group_size)


@pytest.mark.parametrize("candidate_factor", [None, 2])
def test_approximate_path_groups_are_exact_and_recall_meets_the_stated_bound(
    candidate_factor: int | None, hnsw_ann: TestClient, catalogue: FeatureCatalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approximate path (over-fetched HNSW, candidate categories scanned exactly): every returned group is the exact
    top-n of its category, and the share of the true best categories found is at least the index's recall@k − 0.03.
    With the default 4 × groups candidates this catalogue's 40 categories mostly fall back to the full scan, so the
    candidate scan itself is also run with 2 × groups (called directly)."""
    paths: list[bool] = []
    original = api.grouping._candidate_rows

    def recording(*args: Any, **kwargs: Any) -> Any:
        rows = original(*args, **kwargs)
        paths.append(rows is not None)
        return rows

    monkeypatch.setattr(api.grouping, "_candidate_rows", recording)
    loaded = hnsw_ann.app.state.holder.current  # type: ignore[attr-defined]
    tuning = api.grouping.GroupTuning(exact_budget=0, candidate_factor=candidate_factor or 4)
    stated = hnsw_ann.get("/index").json()["recall_at_k"]
    found = total = 0
    for i, q in enumerate(catalogue.queries[100:200]):
        payload = body(f"u{i}", q, group_by="category", group_size=3, groups=5)
        if candidate_factor is None:
            got = grouped(hnsw_ann, payload)
        else:
            request = SearchRequest(vector=q, k=10, name=f"u{i}")
            spec = api.grouping.GroupSpec("category", 3, 5)
            plan = api.grouping.plan_grouped(loaded, request, spec, tuning)
            got = api.grouping.grouped_body(loaded, request, spec, plan)["groups"]
        truth = grouped_truth(catalogue, q, "category", 3, 5)
        for group in got:
            assert_group_exact(catalogue, q, group, "category", group_size=3)
        best = [group["recommendations"][0]["score"] for group in got]
        assert best == sorted(best, reverse=True)
        cut = truth[-1][1][0][1]  # the true 5th category's best score: a tie with it counts as found
        true_names = {name for name, _ in truth}
        found += sum(
            1 for g, s in zip(got, best, strict=True) if g["category"] in true_names or s >= cut * (1 - TIE_RTOL)
        )
        total += len(truth)
    assert found / total >= stated - 0.03
    assert len(paths) == 100
    if candidate_factor is not None:
        assert sum(paths) >= 20  # the candidate scan answered (the others fell back to the full scan)


def test_approximate_path_never_returns_fewer_groups_than_exist(
    hnsw_ann: TestClient, catalogue: FeatureCatalogue
) -> None:
    """An over-fetch of one hit names one category: the answer must still hold `groups` categories (full scan)."""
    loaded = hnsw_ann.app.state.holder.current  # type: ignore[attr-defined]
    tuning = api.grouping.GroupTuning(exact_budget=0, fetch_per_item=0, min_fetch=1)
    for i, q in enumerate(catalogue.queries[100:110]):
        request = SearchRequest(vector=q, k=10, name=f"u{i}")
        spec = api.grouping.GroupSpec("category", 2, 5)
        got = api.grouping.grouped_body(loaded, request, spec, api.grouping.plan_grouped(loaded, request, spec, tuning))
        truth = grouped_truth(catalogue, q, "category", 2, 5)
        assert_groups_equal(catalogue, q, got["groups"], truth, "category", 2)


def test_ties_within_a_group_and_between_categories(pruned: TestClient, catalogue: FeatureCatalogue) -> None:
    """Along the twins' direction: 5 identical twins (group_size 2 keeps 2 of them, at equal scores), then two
    categories tied on one identical product each, ranked by name."""
    q = catalogue.twin_direction * 2.0
    got = grouped(pruned, body("t", q, group_by="category", group_size=2, groups=3, exact=True))
    assert [g["category"] for g in got] == [TWINS, *MIRRORS]
    twins = got[0]["recommendations"]
    assert len(twins) == 2 and twins[0]["score"] == twins[1]["score"]
    assert {h["id"] for h in twins} <= {f"p{row}" for row in range(3, 8)}
    assert got[1]["recommendations"][0]["score"] == got[2]["recommendations"][0]["score"]
    assert_groups_equal(catalogue, q, got, grouped_truth(catalogue, q, "category", 2, 3), "category", 2)


def test_categories_smaller_than_group_size_and_more_groups_than_categories(
    pruned: TestClient, catalogue: FeatureCatalogue
) -> None:
    q = catalogue.queries[150]
    got = grouped(pruned, body("s", q, group_by="category", group_size=4, groups=100))
    sizes = Counter(catalogue.category)
    assert len(got) == len(sizes)  # every category, once
    by_name = {g["category"]: g["recommendations"] for g in got}
    assert len(by_name[SOLO]) == 1 and len(by_name[PAIR]) == 2
    assert all(len(by_name[name]) == min(4, count) for name, count in sizes.items())
    assert_groups_equal(catalogue, q, got, grouped_truth(catalogue, q, "category", 4, 100), "category", 4)


def test_products_without_a_value_belong_to_no_group(pruned: TestClient, catalogue: FeatureCatalogue) -> None:
    got = grouped(pruned, body("m", catalogue.queries[3], group_by="shelf", group_size=100, groups=10))
    assert len(got) == 6
    rows = {catalogue.row_of(h["id"]) for g in got for h in g["recommendations"]}
    assert not any(row % 7 == 0 for row in rows)  # every 7th product has no shelf
    assert all(len(g["recommendations"]) == 100 for g in got)  # each shelf holds ~340 products


@pytest.mark.parametrize("index", ["pruned", "hnsw"])
def test_filter_and_exclusions_with_group_by(
    index: str, request: pytest.FixtureRequest, catalogue: FeatureCatalogue
) -> None:
    """Group by category among the products on shelves s1/s2, never returning excluded products."""
    client = request.getfixturevalue(index)
    allowed = {row for row, shelf in enumerate(catalogue.shelf) if shelf in ("s1", "s2")}
    for i, q in enumerate(catalogue.queries[160:175]):
        plain = grouped(client, body(f"f{i}", q, group_by="category", group_size=3, groups=4, exact=True))
        excluded = {plain[0]["recommendations"][0]["id"], plain[1]["recommendations"][-1]["id"], "p-unknown"}
        payload = body(
            f"f{i}",
            q,
            group_by="category",
            group_size=3,
            groups=4,
            exact=True,
            filter={"shelf": ["s1", "s2"]},
            exclude=sorted(excluded),
        )
        got = grouped(client, payload)
        truth = grouped_truth(catalogue, q, "category", 3, 4, allowed, excluded)
        assert_groups_equal(catalogue, q, got, truth, "category", 3, allowed, excluded)
        approximate = grouped(client, {**payload, "exact": False})  # filters this small are scanned exactly
        for group in approximate:
            assert_group_exact(catalogue, q, group, "category", None, allowed, excluded, 3)


@pytest.mark.parametrize("exact", [True, False])
def test_ivf_index_without_row_ordered_vectors(
    exact: bool, client_factory: ClientFactory, ivf_root: Path, str_catalogue: Catalogue
) -> None:
    """IVF,Flat keeps no vectors in row order in its file: the grouped scan runs on the builder's norm-ordered raw
    copy (vectors.npy), as on every other kind."""
    n = len(str_catalogue.vectors)
    catalogue = FeatureCatalogue(
        list(str_catalogue.ids),
        str_catalogue.vectors,
        list(str_catalogue.categories),
        [None] * n,
        str_catalogue.test_queries,
        np.zeros(str_catalogue.vectors.shape[1], dtype=np.float32),
    )
    client = client_factory(ivf_root)
    for i, q in enumerate(catalogue.queries[:12]):
        excluded = {f"p{j}" for j in range(i, 3000, 40)}
        payload = body(f"i{i}", q, group_by="category", group_size=4, groups=3, exact=exact, exclude=sorted(excluded))
        got = grouped(client, payload)
        truth = grouped_truth(catalogue, q, "category", 4, 3, excluded=excluded)
        assert_groups_equal(catalogue, q, got, truth, "category", 4, excluded=excluded)


def test_filter_allowing_nothing_gives_no_groups(pruned: TestClient, catalogue: FeatureCatalogue) -> None:
    assert grouped(pruned, body("e", catalogue.queries[0], group_by="category", filter={"shelf": []})) == []


def test_defaults_and_response_shape(hnsw: TestClient, roots: dict[str, Path], catalogue: FeatureCatalogue) -> None:
    response = hnsw.post("/infer", json=body("mike", catalogue.queries[120], group_by="category"))
    assert response.status_code == 200
    assert response.headers["x-index-version"] == layout.resolve_current(roots["hnsw"]).name
    answer = response.json()
    assert set(answer) == {"name", "group_by", "groups"}
    assert len(answer["groups"]) == 10  # default groups
    for group in answer["groups"]:
        assert set(group) == {"category", "recommendations"}
        assert 1 <= len(group["recommendations"]) <= 3  # default group_size
        assert all(set(hit) == {"id", "score"} for hit in group["recommendations"])


# ---- /batch --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", ["hnsw", "hnsw_ann"])
def test_batch_mixes_grouped_and_plain_items_in_order(
    index: str, request: pytest.FixtureRequest, catalogue: FeatureCatalogue
) -> None:
    hnsw = request.getfixturevalue(index)
    items: list[dict[str, Any]] = []
    for i, q in enumerate(catalogue.queries[100:130]):
        if i % 3 == 0:
            items.append(body(f"p{i}", q, k=7))
        elif i % 3 == 1:
            items.append(body(f"g{i}", q, group_by="category", group_size=2, groups=4, exact=True))
        else:
            items.append(body(f"h{i}", q, group_by="shelf", group_size=5, groups=2))
    response = hnsw.post("/batch", json=items)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["name"] for a in answers] == [item["name"] for item in items]
    for item, answer in zip(items, answers, strict=True):
        assert_same_answer(answer, hnsw.post("/infer", json=item).json())
        if "group_by" in item:
            assert "recommendations" not in answer
        else:
            assert "groups" not in answer and len(answer["recommendations"]) == 7


# ---- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "loc", "fragment"),
    [
        ({"group_by": "colour"}, ["group_by"], "unknown field; this index has: category, shelf"),
        ({"group_by": 3}, ["group_by"], "expected a string"),
        ({"group_by": "category", "group_size": 0}, ["group_size"], "between 1 and 100"),
        ({"group_by": "category", "groups": 101}, ["groups"], "between 1 and 100"),
        ({"group_by": "category", "groups": True}, ["groups"], "expected an integer"),
        ({"group_by": "category", "k": 5}, ["k"], "use group_size"),
        ({"group_size": 3}, ["group_by"], "field required"),
        ({"group_by": "category", "filter": {"category": ["nope"]}}, ["filter", "category", 0], "unknown value"),
        ({"group_by": "category", "filter": {"aisle": ["x"]}}, ["filter", "aisle"], "unknown filter field"),
        ({"group_by": "category", "gruops": 3}, ["gruops"], "unknown field"),
    ],
)
def test_invalid_grouped_requests_are_422(
    extra: dict[str, Any], loc: list[Any], fragment: str, hnsw: TestClient, catalogue: FeatureCatalogue
) -> None:
    response = hnsw.post("/infer", json=body("bad", catalogue.queries[0], **extra))
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(p["loc"] == loc and fragment in p["msg"] for p in problems), problems


def test_batch_problems_name_the_item(hnsw: TestClient, catalogue: FeatureCatalogue) -> None:
    q = catalogue.queries[0]
    items = [
        body("a", q, group_by="category"),
        body("b", q, k=0),
        body("c", q, group_by="nope"),
        {"name": "d", "group_by": "category"},
    ]
    response = hnsw.post("/batch", json=items)
    assert response.status_code == 422
    locs = [p["loc"] for p in response.json()["detail"]]
    assert locs == [[1, "k"], [2, "group_by"], [3, "vector"]]


def test_wrong_dimension_with_group_by(hnsw: TestClient) -> None:
    response = hnsw.post("/infer", json={"name": "a", "vector": [0.1] * 5, "group_by": "category"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "dimension"


# ---- /index and /openapi.json ---------------------------------------------------------------------------------------


def test_index_lists_categories_with_counts(pruned: TestClient, catalogue: FeatureCatalogue) -> None:
    categories = pruned.get("/index").json()["categories"]
    assert categories["category"] == dict(Counter(catalogue.category))
    assert categories["shelf"] == dict(Counter(s for s in catalogue.shelf if s is not None))


def test_openapi_documents_grouping_and_similar(pruned: TestClient) -> None:
    spec = pruned.get("/openapi.json").json()
    validate(spec)
    request = spec["components"]["schemas"]["InferRequest"]["properties"]
    assert request["group_by"]["enum"] == ["category", "shelf"]
    assert {"group_size", "groups"} <= set(request)
    ok = spec["paths"]["/infer"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/GroupedInferResponse"} in ok["oneOf"]
    assert {"/similar", "/similar/batch"} <= set(spec["paths"])
    assert "404" in spec["paths"]["/similar"]["post"]["responses"]
    assert "categories" in spec["components"]["schemas"]["IndexInfo"]["properties"]


def test_exact_grouped_scan_stops_early_on_norm_skewed_rows() -> None:
    """The Cauchy–Schwarz stop: with log-normal norms (σ 1, 20,000 × 16, 50 categories), the best 3 categories'
    top 2 are decided after a fraction of the rows, and equal a full scan's answer."""
    from index_format.grouped_scan import grouped_scan, select_groups

    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, 16)).astype(np.float32)
    x *= (rng.lognormal(0.0, 1.0, (20_000, 1)) / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    vectors = np.ascontiguousarray(x[np.argsort(-np.linalg.norm(x, axis=1), kind="stable")])
    norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
    codes = rng.integers(0, 50, 20_000).astype(np.int32)
    fractions = []
    for q in rng.standard_normal((40, 16)).astype(np.float32):
        found, scanned = grouped_scan(vectors, norms, codes, 50, q, 2, 3, first_block=256)
        full = select_groups(vectors @ q, codes, 2, 3, 50)
        assert [g.code for g in found] == [g.code for g in full]
        for mine, reference in zip(found, full, strict=True):
            np.testing.assert_allclose(mine.scores, reference.scores, rtol=1e-5, atol=1e-6)
        fractions.append(scanned / 20_000)
    assert float(np.median(fractions)) < 0.3
