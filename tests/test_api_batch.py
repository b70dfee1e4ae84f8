"""POST /batch: same answers as /infer, in order, searched in one call per distinct set of options."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import TINY_CATEGORY, Catalogue, assert_exact, assert_same_answer, request_body
from starlette.testclient import TestClient

from index_format.reader import IndexReader

ClientFactory = Callable[..., TestClient]


@pytest.fixture(scope="module")
def hnsw(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root, max_batch=1000)


@pytest.fixture
def search_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Number of queries in each search the reader executes (one call per plan group) while the test runs."""
    calls: list[int] = []
    original = IndexReader.execute

    def counting(self: IndexReader, plan: Any, xq: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(int(xq.shape[0]))
        return original(self, plan, xq, *args, **kwargs)

    monkeypatch.setattr(IndexReader, "execute", counting)
    yield calls


def mixed_items(catalogue: Catalogue, count: int) -> list[dict[str, Any]]:
    """Items cycling through 4 option sets (so 4 searches), with per-item exclusions that must not split groups."""
    options: list[dict[str, Any]] = [
        {},
        {"k": 5, "exact": True},
        {"filter": {"category": ["drinks", TINY_CATEGORY]}},
        {"k": 3, "params": {"efSearch": 64}},
    ]
    items = []
    for i in range(count):
        extra = dict(options[i % len(options)])
        if i % 3 == 0:
            extra["exclude"] = [f"p{j}" for j in range(i, i + 40)]
        items.append(request_body(f"user{i}", catalogue.test_queries[i % len(catalogue.test_queries)], **extra))
    return items


def test_batch_answers_equal_infer_in_order(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    items = mixed_items(str_catalogue, 40)
    response = hnsw.post("/batch", json=items)
    assert response.status_code == 200, response.text
    assert "x-index-version" in response.headers
    answers = response.json()
    assert [a["name"] for a in answers] == [item["name"] for item in items]
    for item, answer in zip(items, answers, strict=True):
        assert_same_answer(answer, hnsw.post("/infer", json=item).json())


def test_batch_is_one_search_per_option_set(
    hnsw: TestClient, str_catalogue: Catalogue, search_calls: list[int]
) -> None:
    response = hnsw.post("/batch", json=mixed_items(str_catalogue, 200))
    assert response.status_code == 200
    assert sorted(search_calls) == [50, 50, 50, 50]


def test_batch_exact_items_equal_brute_force(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    queries = str_catalogue.test_queries[:100]
    items = [request_body(f"u{i}", q, exact=True, k=10) for i, q in enumerate(queries)]
    answers = hnsw.post("/batch", json=items).json()
    for query, answer in zip(queries, answers, strict=True):
        assert_exact(str_catalogue, query, answer["recommendations"], 10)


def test_batch_exclusions_are_per_item(hnsw: TestClient, str_catalogue: Catalogue) -> None:
    query = str_catalogue.test_queries[0]
    top = [r["id"] for r in hnsw.post("/infer", json=request_body("a", query, exact=True)).json()["recommendations"]]
    items = [request_body("plain", query, exact=True), request_body("excl", query, exact=True, exclude=top[:4])]
    plain, excl = hnsw.post("/batch", json=items).json()
    assert [r["id"] for r in plain["recommendations"]] == top
    assert [r["id"] for r in excl["recommendations"]][:6] == top[4:]
    assert len(excl["recommendations"]) == 10


def test_batch_of_1000_users(hnsw: TestClient, str_catalogue: Catalogue, search_calls: list[int]) -> None:
    queries = np.resize(str_catalogue.test_queries, (1000, str_catalogue.test_queries.shape[1]))
    response = hnsw.post("/batch", json=[request_body(f"u{i}", q) for i, q in enumerate(queries)])
    assert response.status_code == 200
    answers = response.json()
    assert len(answers) == 1000 and all(len(a["recommendations"]) == 10 for a in answers)
    assert search_calls == [1000]


def test_empty_batch(hnsw: TestClient) -> None:
    response = hnsw.post("/batch", json=[])
    assert response.status_code == 200
    assert response.json() == []


def test_one_bad_item_rejects_the_whole_batch(
    hnsw: TestClient, str_catalogue: Catalogue, search_calls: list[int]
) -> None:
    items = [request_body(f"u{i}", q) for i, q in enumerate(str_catalogue.test_queries[:5])]
    items[3]["vector"][7] = "x"
    items[1]["k"] = 0
    del items[4]["name"]
    response = hnsw.post("/batch", json=items)
    assert response.status_code == 422
    locs = [problem["loc"] for problem in response.json()["detail"]]
    assert locs == [[1, "k"], [3, "vector", 7], [4, "name"]]
    assert search_calls == []


def test_batch_over_the_limit(client_factory: ClientFactory, hnsw_root: Path, str_catalogue: Catalogue) -> None:
    client = client_factory(hnsw_root, max_batch=5)
    items = [request_body(f"u{i}", q) for i, q in enumerate(str_catalogue.test_queries[:6])]
    response = client.post("/batch", json=items)
    assert response.status_code == 413
    assert "limit of 5" in response.json()["detail"]
    assert client.post("/batch", json=items[:5]).status_code == 200


@pytest.mark.parametrize("body", [{"name": "a", "vector": [0.0] * 16}, "items", 3, None])
def test_batch_must_be_an_array(hnsw: TestClient, body: Any) -> None:
    response = hnsw.post("/batch", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == []
