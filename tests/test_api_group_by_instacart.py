"""group_by and /similar on real data: instacart_products (48,688 × 384, 134 aisles, 21 departments) against numpy
brute force. An exact (pruned) index keeps the build short; the grouped scan and the faiss kernels reading the
mapped, unaligned rows are the same as behind an HNSW index. Skipped when ../shared/data is absent."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instacart_products"
TIE_RTOL = 1e-5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present"),
]

ClientFactory = Callable[..., TestClient]


@pytest.fixture(scope="module")
def meta() -> list[dict[str, str]]:
    with open(DATA / "items_meta.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def client(
    client_factory: ClientFactory, meta: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> TestClient:
    root = tmp_path_factory.mktemp("instacart_groups")
    embeddings = Embeddings(
        ids=np.load(DATA / "item_ids.npy"),
        vectors=np.load(DATA / "items.npy"),
        metadata={field: [row[field] for row in meta] for field in ("aisle", "department")},
    )
    build(embeddings, root, None, BuildOptions(kind="pruned", max_tune_queries=100))
    return client_factory(root)


@pytest.mark.parametrize(("field", "group_size", "groups"), [("aisle", 3, 5), ("department", 10, 21)])
def test_group_by_equals_brute_force(
    field: str, group_size: int, groups: int, client: TestClient, meta: list[dict[str, str]]
) -> None:
    items = np.load(DATA / "items.npy").astype(np.float64)
    product_ids = np.load(DATA / "item_ids.npy").tolist()
    row_of = {product: row for row, product in enumerate(product_ids)}
    values = np.array([row[field] for row in meta])
    names = sorted(set(values.tolist()))
    members = {name: np.flatnonzero(values == name) for name in names}
    counts = client.get("/index").json()["categories"][field]
    assert counts == {name: int(rows.size) for name, rows in members.items()}
    xq = np.load(DATA / "queries_heldout.npy")[:40]
    for i, q in enumerate(xq):
        body = {"name": f"q{i}", "vector": q.tolist(), "group_by": field, "group_size": group_size, "groups": groups}
        response = client.post("/infer", json=body)
        assert response.status_code == 200, response.text[:300]
        got = response.json()["groups"]
        scores = items @ q.astype(np.float64)
        best = {name: scores[rows].max() for name, rows in members.items()}
        ranked = sorted(names, key=lambda name: (-best[name], name))[:groups]
        assert len(got) == len(ranked)
        np.testing.assert_allclose(
            [g["recommendations"][0]["score"] for g in got], [best[n] for n in ranked], rtol=TIE_RTOL, atol=1e-6
        )
        for group in got:
            rows = [row_of[hit["id"]] for hit in group["recommendations"]]
            assert set(values[rows].tolist()) == {group["category"]}
            truth = np.sort(scores[members[group["category"]]])[::-1][:group_size]
            found = [hit["score"] for hit in group["recommendations"]]
            np.testing.assert_allclose(found, truth, rtol=TIE_RTOL, atol=1e-6)
            np.testing.assert_allclose(found, scores[rows], rtol=TIE_RTOL, atol=1e-6)


def test_similar_equals_brute_force(client: TestClient) -> None:
    items = np.load(DATA / "items.npy").astype(np.float64)
    product_ids = np.load(DATA / "item_ids.npy").tolist()
    for row in (0, 1234, 48687):
        response = client.post("/similar", json={"id": product_ids[row], "k": 10, "metric": "cosine"})
        assert response.status_code == 200, response.text[:300]
        hits = response.json()["recommendations"]
        cosines = items @ items[row] / (np.linalg.norm(items, axis=1) * np.linalg.norm(items[row]))
        cosines[row] = -np.inf
        truth = np.sort(cosines)[::-1][:10]
        assert product_ids[row] not in {hit["id"] for hit in hits}
        np.testing.assert_allclose([hit["score"] for hit in hits], truth, rtol=TIE_RTOL, atol=1e-6)
