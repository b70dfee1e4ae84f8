"""POST /infer: results against numpy brute force, and every request option (k, exact, filter, exclude, params)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import (
    CATEGORIES,
    TINY_CATEGORY,
    Catalogue,
    assert_descending,
    assert_exact,
    recall,
    request_body,
)
from starlette.testclient import TestClient

from index_format import layout

ClientFactory = Callable[..., TestClient]


def infer(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == body["name"]
    recommendations: list[dict[str, Any]] = response.json()["recommendations"]
    return recommendations


@pytest.fixture(scope="module")
def hnsw(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root)


@pytest.fixture(scope="module")
def ivf(client_factory: ClientFactory, ivf_root: Path) -> TestClient:
    return client_factory(ivf_root)


@pytest.fixture(scope="module")
def ivfpq(client_factory: ClientFactory, ivfpq_root: Path) -> TestClient:
    return client_factory(ivfpq_root)


@pytest.fixture(scope="module")
def pruned(client_factory: ClientFactory, pruned_root: Path) -> TestClient:
    return client_factory(pruned_root)


def test_response_shape_ids_and_version_header(hnsw: TestClient, hnsw_root: Path, str_catalogue: Catalogue) -> None:
    query = str_catalogue.test_queries[0]
    response = hnsw.post("/infer", json=request_body("mike", query))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    manifest = layout.read_manifest(layout.resolve_current(hnsw_root))
    assert response.headers["x-index-version"] == manifest.version
    body = response.json()
    assert set(body) == {"name", "recommendations"}
    assert body["name"] == "mike"
    recommendations = body["recommendations"]
    assert len(recommendations) == 10  # default k
    assert all(set(r) == {"id", "score"} for r in recommendations)
    assert all(isinstance(r["id"], str) and r["id"] in str_catalogue.row_of for r in recommendations)
    assert_descending(recommendations)


@pytest.mark.parametrize("index", ["hnsw", "ivf", "ivfpq", "pruned"])
def test_exact_true_equals_brute_force(
    index: str, request: pytest.FixtureRequest, str_catalogue: Catalogue, int_catalogue: Catalogue
) -> None:
    client = request.getfixturevalue(index)
    catalogue = int_catalogue if index == "pruned" else str_catalogue
    for i, query in enumerate(catalogue.test_queries[:60]):
        k = (5, 10, 37)[i % 3]
        assert_exact(catalogue, query, infer(client, request_body(f"u{i}", query, k=k, exact=True)), k)


@pytest.mark.parametrize("index", ["hnsw", "ivf", "ivfpq"])
def test_ann_recall_meets_the_manifest_bound(
    index: str, request: pytest.FixtureRequest, str_catalogue: Catalogue
) -> None:
    """Bound: the held-out recall@10 the builder measured, minus 0.03 (200 queries from the same distribution)."""
    client = request.getfixturevalue(index)
    stated = client.get("/index").json()["recall_at_k"]
    queries = str_catalogue.test_queries[:200]
    found = [recall(str_catalogue, q, infer(client, request_body(f"u{i}", q)), 10) for i, q in enumerate(queries)]
    assert float(np.mean(found)) >= stated - 0.03


def test_k_option_and_default(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    query = str_catalogue.test_queries[1]
    assert len(infer(hnsw, request_body("a", query))) == 10
    assert len(infer(hnsw, request_body("a", query, k=1))) == 1
    assert len(infer(hnsw, request_body("a", query, k=100))) == 100


@pytest.mark.parametrize("exact", [False, True])
def test_k_above_the_catalogue_returns_every_product_once(
    exact: bool, client_factory: ClientFactory, hnsw_root: Path, str_catalogue: Catalogue
) -> None:
    client = client_factory(hnsw_root, max_k=5000)
    recommendations = infer(client, request_body("a", str_catalogue.test_queries[2], k=5000, exact=exact))
    ids = [r["id"] for r in recommendations]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, str) and i in str_catalogue.row_of for i in ids)
    if exact:
        assert len(ids) == len(str_catalogue.vectors)
        assert_exact(str_catalogue, str_catalogue.test_queries[2], recommendations, 5000)
    assert_descending(recommendations)


def test_integer_ids_come_back_as_integers(pruned: TestClient, int_catalogue: Catalogue) -> None:
    recommendations = infer(pruned, request_body("a", int_catalogue.test_queries[0]))
    assert all(type(r["id"]) is int and r["id"] in int_catalogue.row_of for r in recommendations)
    assert_exact(int_catalogue, int_catalogue.test_queries[0], recommendations, 10)


def test_integer_valued_vector_is_accepted(hnsw: TestClient) -> None:
    assert len(infer(hnsw, {"name": "ints", "vector": [1] * 8 + [0] * 8})) == 10


@pytest.mark.parametrize("names", [["drinks"], ["desserts", "snacks"], [TINY_CATEGORY, "produce"]])
@pytest.mark.parametrize("index", ["hnsw", "ivf", "ivfpq", "pruned"])
def test_filter_small_enough_for_an_exact_scan_is_exact(
    index: str, names: list[str], request: pytest.FixtureRequest, str_catalogue: Catalogue, int_catalogue: Catalogue
) -> None:
    client = request.getfixturevalue(index)
    catalogue = int_catalogue if index == "pruned" else str_catalogue
    rows = catalogue.rows_in(set(names))
    for i, query in enumerate(catalogue.test_queries[:20]):
        recommendations = infer(client, request_body(f"u{i}", query, filter={"category": names}))
        assert {catalogue.categories[catalogue.row_of[r["id"]]] for r in recommendations} <= set(names)
        assert_exact(catalogue, query, recommendations, 10, rows)


def test_filter_with_fewer_products_than_k(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    rows = str_catalogue.rows_in({TINY_CATEGORY})
    assert len(rows) == 12
    query = str_catalogue.test_queries[3]
    recommendations = infer(hnsw, request_body("a", query, k=50, filter={"category": [TINY_CATEGORY]}))
    assert len(recommendations) == 12
    assert_exact(str_catalogue, query, recommendations, 50, rows)


def test_empty_filter_list_allows_nothing_and_empty_filter_object_allows_everything(
    hnsw: TestClient, str_catalogue: Catalogue
) -> None:
    query = str_catalogue.test_queries[4]
    assert infer(hnsw, request_body("a", query, filter={"category": []})) == []
    assert len(infer(hnsw, request_body("a", query, filter={}))) == 10


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_filter_through_the_ann_index_keeps_recall(
    index: str, client_factory: ClientFactory, request: pytest.FixtureRequest, str_catalogue: Catalogue
) -> None:
    """With filter_exact_fraction and filter_exact_budget at 0, a filter keeping ~25% of the items goes through the
    ANN index (selector + effort raised by 1/selectivity): results stay inside the filter, recall@10 ≥ 0.9."""
    root = request.getfixturevalue(f"{index}_root")
    client = client_factory(root, filter_exact_fraction=0.0, filter_exact_budget=0)
    names = ["drinks"]
    rows = str_catalogue.rows_in(set(names))
    found = []
    for i, query in enumerate(str_catalogue.test_queries[:50]):
        recommendations = infer(client, request_body(f"u{i}", query, filter={"category": names}))
        assert {str_catalogue.categories[str_catalogue.row_of[r["id"]]] for r in recommendations} <= set(names)
        found.append(recall(str_catalogue, query, recommendations, 10, rows))
    assert float(np.mean(found)) >= 0.9


@pytest.mark.parametrize("index", ["hnsw", "pruned"])
def test_exclude_drops_products_and_still_returns_k(
    index: str, request: pytest.FixtureRequest, str_catalogue: Catalogue, int_catalogue: Catalogue
) -> None:
    client = request.getfixturevalue(index)
    catalogue = int_catalogue if index == "pruned" else str_catalogue
    query = catalogue.test_queries[5]
    top = [r["id"] for r in infer(client, request_body("a", query, exact=True, k=20))]
    unknown = "nope" if index == "hnsw" else 1
    excluded = [top[0], top[3], top[19], unknown]
    recommendations = infer(client, request_body("a", query, exact=True, exclude=excluded))
    assert not {r["id"] for r in recommendations} & set(excluded)
    keep = np.array([row for row in range(len(catalogue.vectors)) if catalogue.id_of(row) not in excluded])
    assert_exact(catalogue, query, recommendations, 10, keep)
    approximate = infer(client, request_body("a", query, exclude=excluded))
    assert len(approximate) == 10 and not {r["id"] for r in approximate} & set(excluded)


def test_exclude_together_with_a_filter(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    query = str_catalogue.test_queries[6]
    body = request_body("a", query, filter={"category": [TINY_CATEGORY]}, k=12)
    every = [r["id"] for r in infer(hnsw, body)]
    assert len(every) == 12
    rest = infer(hnsw, {**body, "exclude": every[:5]})
    assert [r["id"] for r in rest] == every[5:]


def test_ivf_nprobe_per_request_changes_effort(ivf: TestClient, str_catalogue: Catalogue) -> None:
    """nprobe 1 probes one list of 128 (low recall); nprobe 128 probes them all (exact)."""
    queries = str_catalogue.test_queries[:40]
    low, full = [], []
    for i, query in enumerate(queries):
        low.append(recall(str_catalogue, query, infer(ivf, request_body(f"u{i}", query, params={"nprobe": 1})), 10))
        answer = infer(ivf, request_body(f"u{i}", query, params={"nprobe": 128}))
        full.append(recall(str_catalogue, query, answer, 10))
    assert np.mean(low) < 0.7
    assert np.mean(full) == 1.0


def test_ivfpq_params_per_request(ivfpq: TestClient, str_catalogue: Catalogue) -> None:
    """k_factor 1 re-ranks only k PQ candidates; nprobe = every list with k_factor 64 is (near) exact."""
    assert set(ivfpq.get("/index").json()["search_params"]) == {"nprobe", "k_factor"}
    queries = str_catalogue.test_queries[:40]
    low, high = [], []
    for i, query in enumerate(queries):
        answer = infer(ivfpq, request_body(f"u{i}", query, params={"nprobe": 2, "k_factor": 1}))
        low.append(recall(str_catalogue, query, answer, 10))
        answer = infer(ivfpq, request_body(f"u{i}", query, params={"nprobe": 128, "k_factor": 64}))
        high.append(recall(str_catalogue, query, answer, 10))
    assert np.mean(low) < 0.7
    assert np.mean(high) >= 0.99


def test_hnsw_ef_search_per_request(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    queries = str_catalogue.test_queries[:40]
    found = [
        recall(str_catalogue, q, infer(hnsw, request_body(f"u{i}", q, params={"efSearch": 512})), 10)
        for i, q in enumerate(queries)
    ]
    assert np.mean(found) >= 0.99


def test_all_categories_are_known(hnsw: TestClient) -> None:
    assert sorted(hnsw.get("/index").json()["filter_fields"]["category"]) == sorted([*CATEGORIES, TINY_CATEGORY])
