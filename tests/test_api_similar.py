"""POST /similar and /similar/batch against numpy brute force on seeded data: inner product and cosine, the
product itself excluded (its identical twins not), filters, exclusions, every index family (IVF,Flat reads its
lists; IVF,SQ8 answers 501), unknown ids (404), validation (422) and batch order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from api_helpers import TINY_CATEGORY, Catalogue, assert_same_answer
from feature_catalogue import TIE_RTOL, TWINS, FeatureCatalogue, build_feature_index, make_feature_catalogue
from starlette.testclient import TestClient

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_format import layout
from index_format.reader import IndexReader
from index_format.stored import StoredVectors, Unavailable

ClientFactory = Callable[..., TestClient]
F32 = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def catalogue() -> FeatureCatalogue:
    return make_feature_catalogue(seed=707)


@pytest.fixture(scope="module")
def feature_roots(catalogue: FeatureCatalogue, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: build_feature_index(catalogue, tmp_path_factory.mktemp(kind), kind) for kind in ("pruned", "hnsw")}


@pytest.fixture(scope="module")
def pruned(client_factory: ClientFactory, feature_roots: dict[str, Path]) -> TestClient:
    return client_factory(feature_roots["pruned"])


@pytest.fixture(scope="module")
def hnsw(client_factory: ClientFactory, feature_roots: dict[str, Path]) -> TestClient:
    return client_factory(feature_roots["hnsw"])


def similar(client: TestClient, payload: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/similar", json=payload)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == payload["id"] and answer["metric"] == payload.get("metric", "ip")
    hits: list[dict[str, Any]] = answer["recommendations"]
    return hits


def truth(
    vectors: F32, ids: list[Any], row: int, k: int, metric: str, allowed: set[int] | None = None, excluded: Any = ()
) -> tuple[list[Any], npt.NDArray[np.float64]]:
    """Brute force (float64): top-k by inner product or cosine with row's vector, the row itself left out."""
    x = vectors.astype(np.float64)
    scores = x @ x[row]
    if metric == "cosine":
        scores = scores / (np.linalg.norm(x, axis=1) * np.linalg.norm(x[row]))
    keep = [r for r in range(len(ids)) if r != row and ids[r] not in excluded and (allowed is None or r in allowed)]
    order = sorted(keep, key=lambda r: -scores[r])[:k]
    return [ids[r] for r in order], scores[order]


def assert_same(
    hits: list[dict[str, Any]], vectors: F32, ids: list[Any], row: int, k: int, metric: str, **restrict: Any
) -> None:
    """Tie-aware: same length, scores equal the true top-k scores, and each returned id really has its score."""
    true_ids, true_scores = truth(vectors, ids, row, k, metric, **restrict)
    got_scores = np.array([h["score"] for h in hits], dtype=np.float64)
    assert len(hits) == len(true_ids)
    assert len({h["id"] for h in hits}) == len(hits)
    assert ids[row] not in {h["id"] for h in hits}
    np.testing.assert_allclose(got_scores, true_scores, rtol=TIE_RTOL, atol=1e-5)
    position = {value: r for r, value in enumerate(ids)}
    x = vectors.astype(np.float64)
    own = x[[position[h["id"]] for h in hits]] @ x[row]
    if metric == "cosine":
        own = own / (np.linalg.norm(x[[position[h["id"]] for h in hits]], axis=1) * np.linalg.norm(x[row]))
    np.testing.assert_allclose(got_scores, own, rtol=TIE_RTOL, atol=1e-5)


# ---- results against brute force ------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize(("index", "exact"), [("pruned", False), ("hnsw", True)])
def test_exact_answers_equal_brute_force(
    metric: str, index: str, exact: bool, request: pytest.FixtureRequest, catalogue: FeatureCatalogue
) -> None:
    client = request.getfixturevalue(index)
    for i, row in enumerate(range(10, 2400, 97)):
        k = (1, 10, 25)[i % 3]
        hits = similar(client, {"id": f"p{row}", "k": k, "metric": metric, "exact": exact})
        assert_same(hits, catalogue.vectors, catalogue.ids, row, k, metric)


def test_cosine_differs_from_inner_product_on_norm_skewed_products(
    pruned: TestClient, catalogue: FeatureCatalogue
) -> None:
    """The catalogue's norms are log-normal, so the cosine answer is a different list (what the test above checks
    is not the inner-product answer relabelled)."""
    differ = 0
    for row in range(10, 2400, 97):
        ip = [h["id"] for h in similar(pruned, {"id": f"p{row}", "metric": "ip"})]
        cosine = [h["id"] for h in similar(pruned, {"id": f"p{row}", "metric": "cosine"})]
        differ += ip != cosine
    assert differ >= 20


def test_approximate_inner_product_meets_the_stated_recall(hnsw: TestClient, catalogue: FeatureCatalogue) -> None:
    stated = hnsw.get("/index").json()["recall_at_k"]
    hits_total = 0
    rows = list(range(10, 2400, 13))
    for row in rows:
        hits = similar(hnsw, {"id": f"p{row}", "k": 10})
        true_ids, true_scores = truth(catalogue.vectors, catalogue.ids, row, 10, "ip")
        kth = true_scores[-1]
        got = [h for h in hits if h["id"] in true_ids or h["score"] >= kth - TIE_RTOL * abs(kth) - 1e-6]
        hits_total += len(got)
        assert f"p{row}" not in {h["id"] for h in hits}
    assert hits_total / (10 * len(rows)) >= stated - 0.03


def test_itself_excluded_but_identical_twins_returned(pruned: TestClient, catalogue: FeatureCatalogue) -> None:
    """Rows 3..7 hold one identical vector (category TWINS): asking for p3 returns the other four first, tied."""
    hits = similar(pruned, {"id": "p3", "k": 6})
    assert {h["id"] for h in hits[:4]} == {"p4", "p5", "p6", "p7"}
    assert len({h["score"] for h in hits[:4]}) == 1
    cosine = similar(pruned, {"id": "p3", "k": 6, "metric": "cosine"})
    assert {h["id"] for h in cosine[:4]} == {"p4", "p5", "p6", "p7"}
    np.testing.assert_allclose([h["score"] for h in cosine[:4]], 1.0, rtol=1e-5)
    assert catalogue.category[3] == TWINS


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("index", ["pruned", "hnsw"])
def test_filter_and_exclusions(
    metric: str, index: str, request: pytest.FixtureRequest, catalogue: FeatureCatalogue
) -> None:
    client = request.getfixturevalue(index)
    allowed = {row for row, shelf in enumerate(catalogue.shelf) if shelf == "s3"}
    for row in range(20, 2400, 211):
        first = [h["id"] for h in similar(client, {"id": f"p{row}", "k": 5, "metric": metric, "exact": True})]
        excluded = [first[0], first[2], "p-unknown"]
        payload = {"id": f"p{row}", "k": 8, "metric": metric, "filter": {"shelf": ["s3"]}, "exclude": excluded}
        hits = similar(client, payload)
        assert {catalogue.shelf[int(h["id"][1:])] for h in hits} <= {"s3"}
        assert not {h["id"] for h in hits} & set(excluded)
        assert_same(hits, catalogue.vectors, catalogue.ids, row, 8, metric, allowed=allowed, excluded=excluded)


def test_integer_ids(client_factory: ClientFactory, pruned_root: Path, int_catalogue: Catalogue) -> None:
    client = client_factory(pruned_root)
    ids = [int(i) for i in np.asarray(int_catalogue.ids).tolist()]
    for row in (0, 5, 1234):
        for metric in ("ip", "cosine"):
            hits = similar(client, {"id": ids[row], "k": 10, "metric": metric})
            assert all(type(h["id"]) is int for h in hits)
            assert_same(hits, int_catalogue.vectors, ids, row, 10, metric)
    wrong_type = client.post("/similar", json={"id": str(ids[0])})
    assert wrong_type.status_code == 422 and wrong_type.json()["detail"][0]["loc"] == ["id"]


# ---- IVF: stored vectors read from the inverted lists -------------------------------------------------------------


def test_ivf_flat_reads_stored_vectors_from_its_lists(ivf_root: Path, str_catalogue: Catalogue, tmp_path: Path) -> None:
    """The builder stores a norm-ordered raw copy beside an IVF index; versions built before it did (no copy) read
    the vectors from the inverted lists."""
    version = layout.resolve_current(ivf_root)
    reader = IndexReader.open(version)
    assert reader.manifest.exact_method == "norm_scan" and reader.vectors is not None
    copy_order = [str_catalogue.row_of[i] for i in reader.external_ids(np.arange(reader.count))]
    np.testing.assert_array_equal(reader.vectors, str_catalogue.vectors[copy_order])
    old = tmp_path / "old"
    shutil.copytree(version, old)
    (old / layout.RAW_VECTORS_FILE).unlink()
    reader = IndexReader.open(old, verify=False)
    assert reader.vectors is None
    stored = StoredVectors(reader)
    rows = np.array([0, 1, 17, 2999, 1500], dtype=np.int64)
    product_rows = [str_catalogue.row_of[i] for i in reader.external_ids(rows)]
    np.testing.assert_array_equal(stored.of_rows(rows), str_catalogue.vectors[product_rows])
    q = str_catalogue.test_queries[0]
    order = np.array([str_catalogue.row_of[i] for i in reader.external_ids(np.arange(reader.count))])
    np.testing.assert_allclose(stored.scores(q), str_catalogue.vectors[order] @ q, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_similar_on_ivf(metric: str, client_factory: ClientFactory, ivf_root: Path, str_catalogue: Catalogue) -> None:
    client = client_factory(ivf_root)
    for row in (3, 250, 2000):
        hits = similar(client, {"id": f"p{row}", "k": 10, "metric": metric, "exact": True})
        assert_same(hits, str_catalogue.vectors, list(str_catalogue.ids), row, 10, metric)
    filtered = similar(client, {"id": "p7", "filter": {"category": [TINY_CATEGORY]}, "metric": metric})
    rows = set(str_catalogue.rows_in({TINY_CATEGORY}).tolist())
    assert_same(filtered, str_catalogue.vectors, list(str_catalogue.ids), 7, 10, metric, allowed=rows)


@pytest.fixture(scope="module")
def sq8_root(str_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sq8")
    embeddings = Embeddings(ids=str_catalogue.ids, vectors=str_catalogue.vectors)
    build(embeddings, root, str_catalogue.train_queries[:50], BuildOptions(kind="factory", factory="IVF16,SQ8"))
    return root


def test_index_without_exact_vectors_answers_501(client_factory: ClientFactory, sq8_root: Path) -> None:
    reader = IndexReader.open(layout.resolve_current(sq8_root))
    with pytest.raises(Unavailable):
        StoredVectors(reader).of_rows(np.array([0]))
    response = client_factory(sq8_root).post("/similar", json={"id": "p1"})
    assert response.status_code == 501
    assert "does not store exact product vectors" in response.json()["detail"]


# ---- errors --------------------------------------------------------------------------------------------------------


def test_unknown_id_is_404_with_json_detail(pruned: TestClient) -> None:
    response = pruned.post("/similar", json={"id": "p999999"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": [{"loc": ["id"], "msg": "unknown product id 'p999999'", "type": "not_found"}]}


@pytest.mark.parametrize(
    ("payload", "loc", "fragment"),
    [
        ({}, ["id"], "field required"),
        ({"id": 17}, ["id"], "expected a string id"),
        ({"id": "p1", "metric": "l2"}, ["metric"], "expected one of: ip, cosine"),
        ({"id": "p1", "k": 0}, ["k"], "between 1 and 100"),
        ({"id": "p1", "vector": [0.0] * 12}, ["vector"], "unknown field"),
        ({"id": "p1", "name": "x"}, ["name"], "unknown field"),
        ({"id": "p1", "filter": {"shelf": ["s9"]}}, ["filter", "shelf", 0], "unknown value"),
        ({"id": "p1", "exclude": "p2"}, ["exclude"], "expected an array"),
        ({"id": "p1", "params": {"nprobe": 3}}, ["params", "nprobe"], "not a search parameter"),
    ],
)
def test_invalid_requests_are_422(payload: dict[str, Any], loc: list[Any], fragment: str, pruned: TestClient) -> None:
    response = pruned.post("/similar", json=payload)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(p["loc"] == loc and fragment in p["msg"] for p in problems), problems


def test_same_error_rules_as_infer(pruned: TestClient) -> None:
    assert pruned.post("/similar", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert pruned.post("/similar", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert pruned.get("/similar").status_code == 405
    assert pruned.post("/similar/batch", json={"id": "p1"}).status_code == 422


# ---- batch ---------------------------------------------------------------------------------------------------------


def test_batch_answers_in_order_and_equal_single_requests(hnsw: TestClient) -> None:
    items: list[dict[str, Any]] = [
        {"id": f"p{row}", "k": (3, 10)[row % 2], "metric": ("ip", "cosine")[row % 3 == 0]} for row in range(30, 60)
    ]
    items[4]["filter"] = {"shelf": ["s1"]}
    items[7]["exclude"] = ["p1", "p2"]
    response = hnsw.post("/similar/batch", json=items)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["id"] for a in answers] == [item["id"] for item in items]
    for item, answer in zip(items, answers, strict=True):
        assert_same_answer(answer, hnsw.post("/similar", json=item).json())


def test_batch_unknown_ids_are_404_with_positions(pruned: TestClient) -> None:
    response = pruned.post("/similar/batch", json=[{"id": "p1"}, {"id": "nope"}, {"id": "p2"}, {"id": "gone"}])
    assert response.status_code == 404
    assert [p["loc"] for p in response.json()["detail"]] == [[1, "id"], [3, "id"]]


def test_batch_validation_and_limits(client_factory: ClientFactory, feature_roots: dict[str, Path]) -> None:
    client = client_factory(feature_roots["pruned"], max_batch=3)
    bad = client.post("/similar/batch", json=[{"id": "p1"}, {"id": "p2", "k": 0}, {"metric": "ip"}])
    assert bad.status_code == 422
    assert [p["loc"] for p in bad.json()["detail"]] == [[1, "k"], [2, "id"]]
    assert client.post("/similar/batch", json=[{"id": "p1"}] * 4).status_code == 413
    assert client.post("/similar/batch", json=[]).json() == []
