"""offset (paging), score_threshold and with_metadata in /infer, /batch and /similar, checked against brute force."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import TIE_RTOL, Catalogue, request_body
from starlette.testclient import TestClient

ClientFactory = Callable[..., TestClient]
QUERIES = range(0, 40, 4)


@pytest.fixture(scope="module")
def exact(client_factory: ClientFactory, pruned_root: Path) -> TestClient:
    return client_factory(pruned_root)


@pytest.fixture(scope="module")
def hnsw(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root)


def answer(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/infer", json=body)
    assert response.status_code == 200, response.text
    return response.json()["recommendations"]  # type: ignore[no-any-return]


def scores_of(hits: list[dict[str, Any]]) -> np.ndarray:
    return np.array([hit["score"] for hit in hits], dtype=np.float64)


def test_offset_pages_through_the_exact_ranking(exact: TestClient, int_catalogue: Catalogue) -> None:
    for i in QUERIES:
        q = int_catalogue.test_queries[i]
        _, true_scores = int_catalogue.brute_force(q[None], 30)
        pages = [answer(exact, request_body("u", q, k=10, offset=offset)) for offset in (0, 10, 20)]
        joined = [hit for page in pages for hit in page]
        assert [len(page) for page in pages] == [10, 10, 10]
        np.testing.assert_allclose(scores_of(joined), true_scores[0], rtol=TIE_RTOL, atol=1e-5)
        assert len({hit["id"] for hit in joined}) == 30  # no product on two pages


def test_offset_on_the_ann_index_is_the_tail_of_a_deeper_search(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    for i in QUERIES:
        q = str_catalogue.test_queries[i]
        deep = answer(hnsw, request_body("u", q, k=15))
        page = answer(hnsw, request_body("u", q, k=5, offset=10))
        assert page == deep[10:15]


def test_offset_beyond_the_rows_returns_nothing(exact: TestClient, int_catalogue: Catalogue) -> None:
    q = int_catalogue.test_queries[0]
    tiny = {"category": ["bulk"]}  # 12 products
    assert len(answer(exact, request_body("u", q, k=10, offset=5, filter=tiny))) == 7
    assert answer(exact, request_body("u", q, k=10, offset=12, filter=tiny)) == []


def test_score_threshold_keeps_exactly_the_products_scoring_at_least_it(
    exact: TestClient, int_catalogue: Catalogue
) -> None:
    for i in QUERIES:
        q = int_catalogue.test_queries[i]
        true_ids, true_scores = int_catalogue.brute_force(q[None], 20)
        cut = float((true_scores[0][6] + true_scores[0][7]) / 2)  # between the 7th and the 8th best
        got = answer(exact, request_body("u", q, k=20, score_threshold=cut))
        assert [hit["id"] for hit in got] == true_ids[0][:7]
        assert all(hit["score"] >= cut for hit in got)
        assert answer(exact, request_body("u", q, k=20, score_threshold=float(true_scores[0][0]) + 1.0)) == []
        paged = answer(exact, request_body("u", q, k=5, offset=5, score_threshold=cut))
        assert [hit["id"] for hit in paged] == true_ids[0][5:7]


def test_with_metadata_gives_each_products_fields(exact: TestClient, int_catalogue: Catalogue) -> None:
    q = int_catalogue.test_queries[3]
    plain = answer(exact, request_body("u", q, k=20))
    rich = answer(exact, request_body("u", q, k=20, with_metadata=True))
    assert [{"id": hit["id"], "score": hit["score"]} for hit in rich] == plain
    for hit in rich:
        assert hit["metadata"] == {"category": int_catalogue.categories[int_catalogue.row_of[hit["id"]]]}
    assert all("metadata" not in hit for hit in plain)


def test_batch_items_take_the_options_each(exact: TestClient, int_catalogue: Catalogue) -> None:
    items = [
        request_body("a", int_catalogue.test_queries[0], k=4, offset=3),
        request_body("b", int_catalogue.test_queries[1], k=6, with_metadata=True),
        request_body("c", int_catalogue.test_queries[2], k=8, score_threshold=1.0),
        request_body("d", int_catalogue.test_queries[3], k=5),
    ]
    response = exact.post("/batch", json=items)
    assert response.status_code == 200, response.text
    for item, got in zip(items, response.json(), strict=True):
        single = exact.post("/infer", json=item).json()  # scores may differ in the last float32 ulp (batched BLAS)
        assert got["name"] == single["name"]
        assert [hit["id"] for hit in got["recommendations"]] == [hit["id"] for hit in single["recommendations"]]
        assert [hit.get("metadata") for hit in got["recommendations"]] == [
            hit.get("metadata") for hit in single["recommendations"]
        ]
        np.testing.assert_allclose(scores_of(got["recommendations"]), scores_of(single["recommendations"]), rtol=1e-6)


def cosine_top(catalogue: Catalogue, row: int, k: int) -> tuple[list[object], np.ndarray]:
    vectors = catalogue.vectors.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    cosines = vectors @ vectors[row] / (norms * norms[row])
    cosines[row] = -np.inf
    order = np.argsort(-cosines, kind="stable")[:k]
    return [catalogue.id_of(int(r)) for r in order], cosines[order]


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_similar_pages_and_thresholds_like_brute_force(
    exact: TestClient, int_catalogue: Catalogue, metric: str
) -> None:
    for row in (5, 77, 901):
        product = int_catalogue.id_of(row)
        if metric == "cosine":
            true_ids, true_scores = cosine_top(int_catalogue, row, 12)
        else:
            vectors = int_catalogue.vectors.astype(np.float64)
            ip = vectors @ vectors[row]
            ip[row] = -np.inf
            order = np.argsort(-ip, kind="stable")[:12]
            true_ids, true_scores = [int_catalogue.id_of(int(r)) for r in order], ip[order]
        body = {"id": product, "metric": metric, "k": 4, "offset": 8, "with_metadata": True}
        response = exact.post("/similar", json=body)
        assert response.status_code == 200, response.text
        got = response.json()["recommendations"]
        np.testing.assert_allclose(scores_of(got), true_scores[8:12], rtol=TIE_RTOL, atol=1e-5)
        assert all(
            hit["metadata"]["category"] == int_catalogue.categories[int_catalogue.row_of[hit["id"]]] for hit in got
        )
        cut = float((true_scores[2] + true_scores[3]) / 2)
        response = exact.post("/similar", json={"id": product, "metric": metric, "k": 10, "score_threshold": cut})
        assert [hit["id"] for hit in response.json()["recommendations"]] == true_ids[:3]


@pytest.mark.parametrize(
    ("changes", "loc", "fragment"),
    [
        ({"offset": -1}, ["offset"], "at least 0"),
        ({"offset": 995, "k": 10}, ["offset"], "offset + k at most 1000"),
        ({"offset": "3"}, ["offset"], "expected an integer"),
        ({"offset": True}, ["offset"], "expected an integer"),
        ({"score_threshold": "high"}, ["score_threshold"], "expected a number"),
        ({"with_metadata": 1}, ["with_metadata"], "expected true or false"),
        ({"filter": {"category": ["dessert"]}}, ["filter", "category", 0], "unknown value 'dessert'"),
        ({"group_by": "category", "offset": 2}, ["offset"], "does not apply with group_by"),
    ],
)
def test_bad_options_are_422_saying_where(
    exact: TestClient, int_catalogue: Catalogue, changes: dict[str, Any], loc: list[Any], fragment: str
) -> None:
    response = exact.post("/infer", json=request_body("u", int_catalogue.test_queries[0], **changes))
    assert response.status_code == 422, response.text
    [found] = response.json()["detail"]
    assert found["loc"] == loc
    assert fragment in found["msg"]


def test_openapi_documents_the_options(exact: TestClient) -> None:
    spec = exact.get("/openapi.json").json()
    for name in ("InferRequest", "SimilarRequest"):
        properties = spec["components"]["schemas"][name]["properties"]
        assert {"offset", "score_threshold", "with_metadata"} <= properties.keys()
    assert "metadata" in spec["components"]["schemas"]["Recommendation"]["properties"]
