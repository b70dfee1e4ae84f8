"""Seeded synthetic catalogues for tests: clustered directions and log-normal norms, like factorisation output,
with user queries drawn separately from the items."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def catalogue(n: int, d: int, seed: int, clusters: int = 24, norm_sigma: float = 0.8) -> tuple[F32, F32, list[str]]:
    """(items (n, d), centroids (clusters, d), category name per item)."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((clusters, d)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sizes = rng.dirichlet(np.full(clusters, 0.7))
    labels = rng.choice(clusters, size=n, p=sizes)
    directions = centroids[labels] + 0.6 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d) * 3
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = rng.lognormal(mean=0.0, sigma=norm_sigma, size=(n, 1))
    items = (directions * norms).astype(np.float32)
    return items, centroids, [f"cat{label:02d}" for label in labels]


def user_queries(centroids: F32, count: int, seed: int) -> F32:
    """Users: a mix of 1–3 clusters plus noise, with their own norms."""
    rng = np.random.default_rng(seed)
    clusters, d = centroids.shape
    queries = np.zeros((count, d), dtype=np.float32)
    for i in range(count):
        picks = rng.choice(clusters, size=rng.integers(1, 4), replace=False)
        queries[i] = centroids[picks].sum(axis=0) + 0.8 * rng.standard_normal(d) / np.sqrt(d) * 3
    queries *= rng.lognormal(0.0, 0.5, size=(count, 1)).astype(np.float32)
    return queries


def brute_force(items: F32, xq: F32, k: int) -> tuple[F32, npt.NDArray[np.int64]]:
    """Exact top-k by inner product in numpy: (scores, item rows), best first."""
    scores = xq @ items.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), top.astype(np.int64)
