"""`index-builder add`: new products searchable without a full build (an exact delta segment merged with the main
results), replaced ids never answered with their old vector, checked against brute force over main + delta."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import TIE_RTOL, Catalogue, recall, request_body
from starlette.testclient import TestClient

from index_builder.__main__ import main as builder_main
from index_format import Searcher, availability, layout

ClientFactory = Callable[..., TestClient]
N_NEW = 60
N_REPLACED = 40


def write_jsonl(path: Path, ids: list[Any], vectors: np.ndarray, categories: list[str]) -> Path:
    with open(path, "w") as out:
        for id_, vector, category in zip(ids, vectors, categories, strict=True):
            out.write(json.dumps({"id": id_, "vector": [float(v) for v in vector], "category": category}) + "\n")
    return path


def updated(catalogue: Catalogue, seed: int) -> tuple[Catalogue, list[Any], list[Any]]:
    """The catalogue after adding N_NEW products and replacing N_REPLACED (new vectors), the new ids and the
    replaced ids."""
    rng = np.random.default_rng(seed)
    d = catalogue.vectors.shape[1]
    new_vectors = (rng.standard_normal((N_NEW + N_REPLACED, d)) * 0.9).astype(np.float32)
    if isinstance(catalogue.ids, list):
        new_ids: list[Any] = [f"new{i}" for i in range(N_NEW)]
    else:
        new_ids = [int(v) for v in np.arange(N_NEW) * 7 + 9_000_001]
    replaced_rows = rng.choice(len(catalogue.vectors), N_REPLACED, replace=False)
    replaced_ids = [catalogue.id_of(int(r)) for r in replaced_rows]
    categories = ["fresh"] * (N_NEW // 2) + ["drinks"] * (N_NEW - N_NEW // 2) + ["snacks"] * N_REPLACED
    vectors = catalogue.vectors.copy()
    vectors[replaced_rows] = new_vectors[N_NEW:]
    all_categories = list(catalogue.categories)
    for r in replaced_rows.tolist():
        all_categories[r] = "snacks"
    ids: Any = (
        [*catalogue.ids, *new_ids]
        if isinstance(catalogue.ids, list)
        else np.concatenate([catalogue.ids, np.array(new_ids, dtype=np.int64)])
    )
    after = Catalogue(
        ids,
        np.concatenate([vectors, new_vectors[:N_NEW]]),
        all_categories + categories[:N_NEW],
        catalogue.train_queries,
        catalogue.test_queries,
    )
    return after, new_ids, replaced_ids


def add_input(folder: Path, catalogue: Catalogue, after: Catalogue, new_ids: list[Any], replaced: list[Any]) -> Path:
    ids = [*new_ids, *replaced]
    rows = [after.row_of[i] for i in ids]
    return write_jsonl(folder / "new.jsonl", ids, after.vectors[rows], [after.categories[r] for r in rows])


@pytest.fixture(scope="module")
def added(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Catalogue, list[Any], list[Any]]:
    """The exact (pruned, integer ids) test index with products added and replaced."""
    source = request.getfixturevalue("pruned_root")
    catalogue = request.getfixturevalue("int_catalogue")
    folder = tmp_path_factory.mktemp("delta")
    root = folder / "root"
    shutil.copytree(source, root, symlinks=True)
    after, new_ids, replaced = updated(catalogue, 3)
    assert builder_main(["add", str(root), str(add_input(folder, catalogue, after, new_ids, replaced))]) == 0
    return root, after, new_ids, replaced


def test_the_new_version_links_the_old_files_and_verifies(
    added: tuple[Path, Catalogue, list[Any], list[Any]], pruned_root: Path
) -> None:
    root, _, _, _ = added
    versions = layout.list_versions(root)
    assert len(versions) == 2
    old, new = versions
    manifest = layout.read_manifest(new)
    assert manifest.delta["count"] == N_NEW + N_REPLACED and manifest.delta["replaced"] == N_REPLACED
    assert (old / layout.INDEX_FILE).stat().st_ino == (new / layout.INDEX_FILE).stat().st_ino  # a hard link
    layout.verify_checksums(old, layout.read_manifest(old))  # the published version is untouched
    layout.verify_checksums(new, manifest)
    assert layout.resolve_current(root) == new


def test_exact_answers_equal_brute_force_over_main_and_delta(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]]
) -> None:
    root, after, new_ids, replaced = added
    client = client_factory(root)
    assert client.get("/index").json()["delta"]["items"] == N_NEW + N_REPLACED
    seen_new = 0
    for i in range(0, 200, 5):
        q = after.test_queries[i]
        got = client.post("/infer", json=request_body("u", q, k=10, exact=True)).json()["recommendations"]
        true_ids, true_scores = after.brute_force(q[None], 10)
        np.testing.assert_allclose([h["score"] for h in got], true_scores[0], rtol=TIE_RTOL, atol=1e-5)
        for hit in got:  # every score is the product's current vector's (never a replaced one's old vector)
            current = float(after.vectors[after.row_of[hit["id"]]].astype(np.float64) @ q.astype(np.float64))
            assert abs(hit["score"] - current) <= 1e-4 * max(1.0, abs(current))
        seen_new += len({h["id"] for h in got} & set(new_ids + replaced))
    assert seen_new > 20  # the added products do rank


def test_replaced_ids_are_never_answered_with_their_old_vector(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]], int_catalogue: Catalogue
) -> None:
    """Query with each replaced product's OLD vector: its old row would be the best match; the answer may list the
    id only with the new vector's score."""
    root, after, _, replaced = added
    client = client_factory(root)
    for product in replaced:
        old = int_catalogue.vectors[int_catalogue.row_of[product]]
        got = client.post("/infer", json=request_body("u", old, k=20, exact=True)).json()["recommendations"]
        new_score = float(after.vectors[after.row_of[product]] @ old)
        for hit in got:
            if hit["id"] == product:
                assert abs(hit["score"] - new_score) <= 1e-4 * max(1.0, abs(new_score))


def test_filters_exclusions_metadata_paging_and_hiding_cover_the_delta(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]]
) -> None:
    root, after, new_ids, _ = added
    client = client_factory(root)
    q = after.test_queries[1]
    fresh = client.post("/infer", json=request_body("u", q, k=50, filter={"category": ["fresh"]}, with_metadata=True))
    assert fresh.status_code == 200, fresh.text
    got = fresh.json()["recommendations"]
    assert {h["id"] for h in got} == set(new_ids[: N_NEW // 2])  # the new category holds only new products
    assert all(h["metadata"] == {"category": "fresh"} for h in got)
    rows = after.rows_in({"fresh"})
    true_ids, _ = after.brute_force(q[None], 50, rows)
    assert [h["id"] for h in got] == true_ids[0][: len(got)]
    best_new = got[0]["id"]
    excluded = client.post(
        "/infer", json=request_body("u", q, k=50, filter={"category": ["fresh"]}, exclude=[best_new])
    )
    assert best_new not in {h["id"] for h in excluded.json()["recommendations"]}
    page = client.post("/infer", json=request_body("u", q, k=5, offset=5, exact=True)).json()["recommendations"]
    full = client.post("/infer", json=request_body("u", q, k=10, exact=True)).json()["recommendations"]
    assert [h["id"] for h in page] == [h["id"] for h in full[5:]]
    assert client.post("/admin/items/hide", json={"ids": [best_new]}).status_code == 200
    hidden = client.post("/infer", json=request_body("u", q, k=50, filter={"category": ["fresh"]})).json()
    assert best_new not in {h["id"] for h in hidden["recommendations"]}
    assert client.post("/admin/items/restore", json={"ids": [best_new]}).status_code == 200


def test_ann_with_a_delta_finds_every_added_product_exact_search_finds(
    client_factory: ClientFactory, hnsw_root: Path, str_catalogue: Catalogue, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(hnsw_root, root, symlinks=True)
    after, new_ids, replaced = updated(str_catalogue, 4)
    assert builder_main(["add", str(root), str(add_input(tmp_path, str_catalogue, after, new_ids, replaced))]) == 0
    client = client_factory(root)
    recalls = []
    delta_ids = set(new_ids) | set(replaced)
    for q in after.test_queries[:200]:
        got = client.post("/infer", json=request_body("u", q, k=10)).json()["recommendations"]
        true_ids, _ = after.brute_force(q[None], 10)
        assert {i for i in true_ids[0] if i in delta_ids} <= {h["id"] for h in got}  # the delta is searched exactly
        recalls.append(recall(after, q, got, 10))
    stated = layout.read_manifest(layout.resolve_current(root)).recall_at_k
    assert float(np.mean(recalls)) >= stated - 0.03, (np.mean(recalls), stated)


def test_a_second_add_replaces_within_the_delta_and_the_limit_is_enforced(
    pruned_root: Path, int_catalogue: Catalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    shutil.copytree(pruned_root, root, symlinks=True)
    d = int_catalogue.vectors.shape[1]
    first = write_jsonl(tmp_path / "a.jsonl", [9_000_001, 9_000_002], np.ones((2, d)), ["fresh", "fresh"])
    assert builder_main(["add", str(root), str(first)]) == 0
    second = write_jsonl(tmp_path / "b.jsonl", [9_000_002], np.full((1, d), 2.0), ["drinks"])
    assert builder_main(["add", str(root), str(second)]) == 0
    manifest = layout.read_manifest(layout.resolve_current(root))
    assert manifest.delta["count"] == 2
    too_many = int(0.05 * len(int_catalogue.vectors)) + 1
    big = write_jsonl(
        tmp_path / "c.jsonl", list(range(9_100_000, 9_100_000 + too_many)), np.ones((too_many, d)), ["x"] * too_many
    )
    capsys.readouterr()
    assert builder_main(["add", str(root), str(big)]) == 2
    assert "full `index-builder build`" in capsys.readouterr().err
    wrong_dim = write_jsonl(tmp_path / "d.jsonl", [9_000_003], np.ones((1, d + 1)), ["x"])
    assert builder_main(["add", str(root), str(wrong_dim)]) == 2
    assert layout.read_manifest(layout.resolve_current(root)).version == manifest.version


def test_similar_to_an_added_or_replaced_product_uses_its_delta_vector(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]]
) -> None:
    root, after, new_ids, replaced = added
    client = client_factory(root)
    vectors = after.vectors.astype(np.float64)
    for product in (new_ids[0], new_ids[7], replaced[0], replaced[5]):
        row = after.row_of[product]
        response = client.post("/similar", json={"id": product, "k": 10, "exact": True})
        assert response.status_code == 200, response.text
        got = response.json()["recommendations"]
        ip = vectors @ vectors[row]
        ip[row] = -np.inf
        true = np.sort(ip)[::-1][:10]
        np.testing.assert_allclose([h["score"] for h in got], true, rtol=TIE_RTOL, atol=1e-5)
        assert product not in {h["id"] for h in got}
    assert client.post("/similar", json={"id": 12345}).status_code == 404


def test_exact_cosine_similar_products_include_the_delta(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]]
) -> None:
    root, after, new_ids, _ = added
    client = client_factory(root)
    vectors = after.vectors.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    for product in (new_ids[3], after.id_of(10)):
        row = after.row_of[product]
        cosines = vectors @ vectors[row] / (norms * norms[row])
        cosines[row] = -np.inf
        true = np.sort(cosines)[::-1][:10]
        response = client.post("/similar", json={"id": product, "k": 10, "metric": "cosine"})
        assert response.status_code == 200, response.text
        got = response.json()["recommendations"]
        np.testing.assert_allclose([h["score"] for h in got], true, rtol=TIE_RTOL, atol=1e-5)


def test_group_by_merges_the_delta_into_every_category(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]]
) -> None:
    """Per-category top-n over main + delta equals brute force (the new category "fresh" holds only new products)."""
    root, after, _, _ = added
    client = client_factory(root)
    vectors = after.vectors.astype(np.float64)
    for i in range(0, 40, 8):
        q = after.test_queries[i]
        body = request_body("u", q, group_by="category", group_size=3, groups=6)
        response = client.post("/infer", json=body)
        assert response.status_code == 200, response.text
        groups = response.json()["groups"]
        scores = vectors @ q.astype(np.float64)
        best: dict[str, np.ndarray] = {}
        for name in set(after.categories):
            rows = after.rows_in({name})
            best[name] = np.sort(scores[rows])[::-1][:3]
        ranked = sorted(best, key=lambda name: -best[name][0])[:6]
        assert [g["category"] for g in groups] == ranked
        for group in groups:
            got = [h["score"] for h in group["recommendations"]]
            np.testing.assert_allclose(got, best[group["category"]], rtol=TIE_RTOL, atol=1e-5)


def test_the_python_searcher_sees_the_delta_and_the_hidden_products_as_the_service_does(
    client_factory: ClientFactory, added: tuple[Path, Catalogue, list[Any], list[Any]], tmp_path: Path
) -> None:
    """`Searcher.open(root)` (the Python API and bulk scoring) searches the delta and leaves hidden products out:
    its exact answers equal brute force over main + delta without the hidden ones, and equal the service's."""
    source, after, new_ids, _ = added
    root = tmp_path / "root"
    shutil.copytree(source, root, symlinks=True)
    xq = after.test_queries[:40]
    true_ids, _ = after.brute_force(xq, 5)
    hidden = [true_ids[0][0], new_ids[0]]  # a main product and an added one
    availability.change(root, hide=hidden)
    searcher = Searcher.open(root)
    visible = np.array([r for r in range(len(after.vectors)) if after.id_of(r) not in set(hidden)], dtype=np.int64)
    _, truth_scores = after.brute_force(xq, 5, visible)
    found = searcher.search(xq, 5, exact=True)
    client = client_factory(root)
    for q, result, scores in zip(xq, found, truth_scores, strict=True):
        assert not set(result.ids) & set(hidden)
        np.testing.assert_allclose(result.scores, scores, rtol=TIE_RTOL, atol=1e-5)
        body = client.post("/infer", json=request_body("u", q, k=5, exact=True)).json()["recommendations"]
        assert [h["id"] for h in body] == result.ids
    assert any(set(result.ids) & set(new_ids) for result in found)  # added products are answered


def test_delta_top_above_a_floor_equals_brute_force(added: tuple[Path, Catalogue, list[Any], list[Any]]) -> None:
    """DeltaSegment.top scans only the rows whose norm can reach the floor (rows in descending-norm order): the same
    rows and scores as brute force over every given row, for floors from none to above every score."""
    from index_format.delta import DeltaSegment

    root, after, _, _ = added
    version = layout.resolve_current(root)
    delta = DeltaSegment.open(version, layout.read_manifest(version))
    assert delta is not None
    vectors = np.asarray(delta.vectors, dtype=np.float64)
    rng = np.random.default_rng(11)
    for i, q in enumerate(after.test_queries[:30]):
        rows = np.arange(delta.count) if i % 2 else np.sort(rng.choice(delta.count, delta.count // 2, replace=False))
        scores = vectors[rows] @ q.astype(np.float64)
        for floor in (-np.inf, float(np.quantile(scores, 0.5)), float(np.quantile(scores, 0.95)), scores.max() + 1):
            got_scores, got_rows = delta.top(q, 5, rows, floor)
            want = rows[scores > floor][np.argsort(-scores[scores > floor], kind="stable")][:5] + delta.base
            assert sorted(got_rows.tolist()) == sorted(want.tolist()), (i, floor)
            assert np.all(np.diff(got_scores) <= 0) and np.all(got_scores > floor)
