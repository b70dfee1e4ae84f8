"""Filtered recall through the API on real data: instacart_products, department filter, against the
department-restricted exact ground truth (gt_heldout_samedept_*). Skipped when ../shared/data is absent."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from starlette.testclient import TestClient

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instacart_products"
K = 10
TIE_RTOL = 1e-5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present"),
]

ClientFactory = Callable[..., TestClient]


def departments(csv_path: Path) -> list[str]:
    with open(csv_path, newline="") as handle:
        return [row["department"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def instacart_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HNSW over all 48,688 products (ids: Instacart product_id), department as the filterable field."""
    root = tmp_path_factory.mktemp("instacart")
    embeddings = Embeddings(
        ids=np.load(DATA / "item_ids.npy"),
        vectors=np.load(DATA / "items.npy"),
        metadata={"department": list(departments(DATA / "items_meta.csv"))},
    )
    build(embeddings, root, None, BuildOptions(kind="hnsw"))
    return root


def filtered_recall(answers: list[list[dict[str, object]]], xq: npt.NDArray[np.float32]) -> float:
    """Tie-aware recall@10 against the same-department ground truth; answers are scored with the true inner
    product. `bulk` has only 37 items, so its padded (-1) truth entries are left out of the denominator."""
    items = np.load(DATA / "items.npy", mmap_mode="r")
    item_ids = np.load(DATA / "item_ids.npy")
    row_of = {int(product): row for row, product in enumerate(item_ids.tolist())}
    truth = np.load(DATA / "gt_heldout_samedept_ids.npy")[:, :K]
    truth_scores = np.load(DATA / "gt_heldout_samedept_scores.npy")[:, :K]
    hits = total = 0
    for i, answer in enumerate(answers):
        valid = truth[i][truth[i] >= 0]
        kth = float(truth_scores[i][len(valid) - 1])
        true_ids = set(item_ids[valid].tolist())
        rows = [row_of[int(str(r["id"]))] for r in answer[: len(valid)]]
        scores = np.asarray(items[rows]) @ xq[i] if rows else np.empty(0)
        hits += sum(
            1
            for r, s in zip(answer, scores, strict=False)
            if r["id"] in true_ids or s >= kth - TIE_RTOL * abs(kth) - 1e-6
        )
        total += len(valid)
    return hits / total


@pytest.mark.parametrize(
    "path",
    [
        pytest.param({}, id="default-policy"),  # departments of 37-6,424 rows (× 384 ≤ 4M budget): exact scans
        pytest.param({"filter_exact_fraction": 0.0, "filter_exact_budget": 0}, id="forced-ann"),
    ],
)
def test_department_filtered_recall_at_10(
    path: dict[str, float], client_factory: ClientFactory, instacart_root: Path
) -> None:
    xq = np.load(DATA / "queries_heldout.npy")
    query_departments = departments(DATA / "queries_heldout_meta.csv")
    client = client_factory(instacart_root, **path)
    items = [
        {"name": f"q{i}", "vector": xq[i].tolist(), "k": K, "filter": {"department": [query_departments[i]]}}
        for i in range(xq.shape[0])
    ]
    answers: list[list[dict[str, object]]] = []
    for start in range(0, len(items), 250):
        response = client.post("/batch", json=items[start : start + 250])
        assert response.status_code == 200, response.text[:500]
        answers += [answer["recommendations"] for answer in response.json()]
    department_of = dict(
        zip(np.load(DATA / "item_ids.npy").tolist(), departments(DATA / "items_meta.csv"), strict=True)
    )
    for i, answer in enumerate(answers):
        assert all(department_of[r["id"]] == query_departments[i] for r in answer)
        assert len(answer) == K
    measured = filtered_recall(answers, xq)
    print(f"instacart department-filtered recall@{K} through the API ({path or 'default policy'}): {measured:.4f}")
    assert measured >= 0.95
