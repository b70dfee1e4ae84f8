"""Seeded test catalogues and assertions shared by the API tests (answers are checked against numpy brute force)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

N_ITEMS = 3000
DIM = 16
CATEGORIES = ("desserts", "drinks", "produce", "snacks")
TINY_CATEGORY = "bulk"  # 12 items, every 250th row: a filter far smaller than the catalogue
TINY_EVERY = 250

TIE_RTOL = 1e-5  # float32 scores: within this relative distance of the true k-th score counts as a tie

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Catalogue:
    """Clustered item vectors with log-normal norms (popularity), categories correlated with clusters, and user
    vectors drawn like the items; ids are external ids in the builder's input order."""

    ids: list[str] | npt.NDArray[np.int64]
    vectors: F32
    categories: list[str]
    train_queries: F32  # given to the builder for tuning
    test_queries: F32  # never seen by the builder

    def brute_force(self, xq: F32, k: int, rows: npt.NDArray[np.int64] | None = None) -> tuple[list[list[object]], F32]:
        """Exact top-k (float64) over all items or the given input rows: (ids per query, scores (nq, k))."""
        candidates = np.arange(len(self.vectors)) if rows is None else rows
        scores = xq.astype(np.float64) @ self.vectors[candidates].astype(np.float64).T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = [[self.id_of(int(candidates[j])) for j in row] for row in order]
        return ids, np.take_along_axis(scores, order, axis=1).astype(np.float32)

    @cached_property
    def row_of(self) -> dict[object, int]:
        return {self.id_of(row): row for row in range(len(self.vectors))}

    def id_of(self, row: int) -> object:
        return self.ids[row] if isinstance(self.ids, list) else int(self.ids[row])

    def rows_in(self, names: set[str]) -> npt.NDArray[np.int64]:
        return np.array([i for i, c in enumerate(self.categories) if c in names], dtype=np.int64)


def make_catalogue(seed: int, string_ids: bool, n: int = N_ITEMS, d: int = DIM, clusters: int = 24) -> Catalogue:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))

    def draw(count: int, norm_mean: float) -> tuple[F32, npt.NDArray[np.int64]]:
        assign = rng.integers(0, clusters, count)
        x = centers[assign] + 0.7 * rng.standard_normal((count, d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x *= rng.lognormal(norm_mean, 0.5, count)[:, None]
        return x.astype(np.float32), assign

    vectors, assign = draw(n, 0.0)
    categories = [CATEGORIES[a % len(CATEGORIES)] for a in assign.tolist()]
    for row in range(0, n, TINY_EVERY):
        categories[row] = TINY_CATEGORY
    queries, _ = draw(800, 0.5)
    ids: list[str] | npt.NDArray[np.int64] = (
        [f"p{i}" for i in range(n)] if string_ids else (np.arange(n, dtype=np.int64) * 7 + 100_003)
    )
    return Catalogue(ids, vectors, categories, queries[:400], queries[400:])


def request_body(name: str, vector: F32, **options: Any) -> dict[str, Any]:
    return {"name": name, "vector": [float(v) for v in vector], **options}


def true_scores_of(catalogue: Catalogue, query: F32, ids: list[Any]) -> npt.NDArray[np.float64]:
    rows = [catalogue.row_of[i] for i in ids]
    return catalogue.vectors[rows].astype(np.float64) @ query.astype(np.float64)


def _is_hit(score: float, kth: float) -> bool:
    return score >= kth - TIE_RTOL * abs(kth) - 1e-6


def assert_exact(
    catalogue: Catalogue, query: F32, recommendations: list[dict[str, Any]], k: int, rows: Any = None
) -> None:
    """The answer is the true top-k (over `rows` if given): same length, scores equal to the true inner products,
    and every id is a true top-k id or ties with the k-th (float32 may order near-equal scores differently)."""
    true_ids, true_scores = catalogue.brute_force(query[None, :], k, rows)
    got_ids = [r["id"] for r in recommendations]
    got_scores = np.array([r["score"] for r in recommendations], dtype=np.float64)
    assert len(got_ids) == len(true_ids[0])
    assert len(set(got_ids)) == len(got_ids), "duplicate ids"
    np.testing.assert_allclose(got_scores, true_scores[0], rtol=TIE_RTOL, atol=1e-5)
    np.testing.assert_allclose(got_scores, true_scores_of(catalogue, query, got_ids), rtol=TIE_RTOL, atol=1e-5)
    if len(got_ids):
        kth = float(true_scores[0][-1])
        for got, score in zip(got_ids, got_scores, strict=True):
            assert got in true_ids[0] or _is_hit(score, kth), f"{got} ({score}) is not in the true top-{k}"


def recall(catalogue: Catalogue, query: F32, recommendations: list[dict[str, Any]], k: int, rows: Any = None) -> float:
    """Tie-aware recall@k of one answer, scoring returned ids with the true inner product."""
    true_ids, true_scores = catalogue.brute_force(query[None, :], k, rows)
    if not true_ids[0]:
        return 1.0
    got = [r["id"] for r in recommendations[:k]]
    kth = float(true_scores[0][-1])
    scores = true_scores_of(catalogue, query, got) if got else np.empty(0)
    hits = sum(1 for i, s in zip(got, scores, strict=True) if i in true_ids[0] or _is_hit(float(s), kth))
    return hits / len(true_ids[0])


def assert_descending(recommendations: list[dict[str, Any]]) -> None:
    scores = [r["score"] for r in recommendations]
    assert scores == sorted(scores, reverse=True)


def assert_same_answer(got: Any, expected: Any, where: str = "answer") -> None:
    """Equal answers from two code paths (e.g. one batched search against single searches): the same structure
    and values, except that scores need only agree within float32 rounding (a batched kernel may sum in another
    order, or see the query at another memory alignment) and near-equal scores may come in either order."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), f"{where}: {got} != {expected}"
        for key, value in expected.items():
            if key == "recommendations":
                _assert_same_ranking(got[key], value, f"{where}.{key}")
            else:
                assert_same_answer(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got} != {expected}"
        for i, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert_same_answer(mine, theirs, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(got, float) and _close(got, expected), f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_RTOL * max(abs(a), abs(b)) + 1e-6


def _assert_same_ranking(got: list[dict[str, Any]], expected: list[dict[str, Any]], where: str) -> None:
    assert len(got) == len(expected), f"{where}: {len(got)} results != {len(expected)}"
    for rank, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert _close(mine["score"], theirs["score"]), f"{where}[{rank}]: {mine} != {theirs}"
        if mine["id"] != theirs["id"]:  # a near-tie in another order (or swapped at the last place)
            tied = [r["id"] for r in expected if _close(r["score"], mine["score"])]
            assert mine["id"] in tied or _close(mine["score"], expected[-1]["score"]), f"{where}[{rank}]: {mine}"
