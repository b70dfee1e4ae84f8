"""A seeded catalogue for the group_by and /similar tests (many small categories, exact ties, missing values), and the
numpy brute force both are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

N = 2400
DIM = 12
TIE_RTOL = 1e-5
SOLO = "solo"  # 1 product
PAIR = "pair"  # 2 products
TWINS = "twins"  # 5 identical vectors (ties inside one group)
MIRRORS = ("mirror-a", "mirror-b")  # one identical vector each (two categories tied on their best product)
SHELVES = ("s0", "s1", "s2", "s3", "s4", "s5")  # second field; every 7th product has none


@dataclass(frozen=True)
class FeatureCatalogue:
    ids: list[str]
    vectors: F32
    category: list[str]
    shelf: list[str | None]
    queries: F32
    twin_direction: F32  # a query for which TWINS and MIRRORS hold the top scores

    def embeddings(self) -> Embeddings:
        return Embeddings(
            ids=self.ids, vectors=self.vectors, metadata={"category": list(self.category), "shelf": list(self.shelf)}
        )

    def field(self, name: str) -> list[str | None]:
        return list(self.category) if name == "category" else list(self.shelf)

    def row_of(self, product: str) -> int:
        return int(product[1:])


def make_feature_catalogue(seed: int = 606) -> FeatureCatalogue:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, DIM))
    assign = rng.integers(0, 20, N)
    x = centers[assign] + 0.8 * rng.standard_normal((N, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= rng.lognormal(0.0, 0.6, N)[:, None]
    # 36 categories of Zipf-like sizes, correlated with the clusters.
    sizes = np.maximum(1, (400 / np.arange(1, 37) ** 1.1)).astype(int)
    weights = sizes / sizes.sum()
    category = [
        f"c{int(rng.choice(36, p=weights)) if rng.random() < 0.5 else int(a) % 36:02d}" for a in assign.tolist()
    ]
    category[0] = SOLO
    category[1] = category[2] = PAIR
    twin_direction = rng.standard_normal(DIM)
    twin_direction /= np.linalg.norm(twin_direction)
    top_norm = float(np.linalg.norm(x, axis=1).max())
    for row in range(3, 8):
        x[row] = twin_direction * top_norm * 1.5
        category[row] = TWINS
    for row, name in zip((8, 9), MIRRORS, strict=True):
        x[row] = twin_direction * top_norm * 1.2
        category[row] = name
    shelf: list[str | None] = [None if i % 7 == 0 else SHELVES[int(rng.integers(0, 6))] for i in range(N)]
    q_assign = rng.integers(0, 20, 200)
    queries = centers[q_assign] + 0.8 * rng.standard_normal((200, DIM))
    queries *= rng.lognormal(0.5, 0.5, 200)[:, None] / np.linalg.norm(queries, axis=1, keepdims=True)
    return FeatureCatalogue(
        [f"p{i}" for i in range(N)],
        x.astype(np.float32),
        category,
        shelf,
        queries.astype(np.float32),
        twin_direction.astype(np.float32),
    )


def build_feature_index(catalogue: FeatureCatalogue, root: Path, kind: str) -> Path:
    build(catalogue.embeddings(), root, catalogue.queries[:100], BuildOptions(kind=kind))
    return root


# ---- brute force ---------------------------------------------------------------------------------------------------


def grouped_truth(
    catalogue: FeatureCatalogue,
    q: F32,
    field: str,
    group_size: int,
    groups: int,
    allowed: set[int] | None = None,
    excluded: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[tuple[str, list[tuple[str, float]]]]:
    """Exact (float64) per-category top-n: categories by best score then name; items by score then row."""
    scores = catalogue.vectors.astype(np.float64) @ q.astype(np.float64)
    values = catalogue.field(field)
    members: dict[str, list[tuple[float, int]]] = {}
    for row in range(len(catalogue.ids)):
        value = values[row]
        if value is None or catalogue.ids[row] in excluded or (allowed is not None and row not in allowed):
            continue
        members.setdefault(value, []).append((-scores[row], row))
    ranked = sorted(members, key=lambda name: (min(members[name])[0], name))[:groups]
    return [(name, [(catalogue.ids[row], -neg) for neg, row in sorted(members[name])[:group_size]]) for name in ranked]


def assert_groups_equal(
    catalogue: FeatureCatalogue,
    q: F32,
    got: list[dict[str, Any]],
    truth: list[tuple[str, list[tuple[str, float]]]],
    field: str,
    group_size: int,
    allowed: set[int] | None = None,
    excluded: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Tie-aware equality of a grouped answer with the brute force: same number of groups, per rank the same best
    score (a tied category may stand in), and each group the exact top-n of its own category."""
    assert len(got) == len(truth)
    values = catalogue.field(field)
    true_best = np.array([items[0][1] for _, items in truth])
    got_best = np.array([group["recommendations"][0]["score"] for group in got], dtype=np.float64)
    np.testing.assert_allclose(got_best, true_best, rtol=TIE_RTOL, atol=1e-5)
    names = [group["category"] for group in got]
    assert len(set(names)) == len(names), "a category appears twice"
    for group in got:
        assert_group_exact(catalogue, q, group, field, values, allowed, excluded, group_size)


def assert_group_exact(
    catalogue: FeatureCatalogue,
    q: F32,
    group: dict[str, Any],
    field: str,
    values: list[str | None] | None = None,
    allowed: set[int] | None = None,
    excluded: set[str] = frozenset(),  # type: ignore[assignment]
    group_size: int | None = None,
) -> None:
    """One group equals exact search restricted to its category (ties at the cut may pick either product)."""
    values = values if values is not None else catalogue.field(field)
    name = group["category"]
    got = group["recommendations"]
    ids = [hit["id"] for hit in got]
    assert len(set(ids)) == len(ids), "duplicate ids"
    rows = [catalogue.row_of(i) for i in ids]
    assert all(values[row] == name for row in rows), f"a product outside {name!r}"
    assert not set(ids) & excluded
    if allowed is not None:
        assert set(rows) <= allowed
    members = [
        r
        for r in range(len(catalogue.ids))
        if values[r] == name and catalogue.ids[r] not in excluded and (allowed is None or r in allowed)
    ]
    exact = np.sort(catalogue.vectors[members].astype(np.float64) @ q.astype(np.float64))[::-1]
    size = len(got) if group_size is None else group_size
    assert len(got) == min(size, len(members))
    scores = np.array([hit["score"] for hit in got], dtype=np.float64)
    np.testing.assert_allclose(scores, exact[: len(got)], rtol=TIE_RTOL, atol=1e-5)
    true_scores = catalogue.vectors[rows].astype(np.float64) @ q.astype(np.float64)
    np.testing.assert_allclose(scores, true_scores, rtol=TIE_RTOL, atol=1e-5)
