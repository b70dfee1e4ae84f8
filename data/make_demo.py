"""Write the seeded demo catalogue used by `make serve`: products.jsonl (5,000 items) and queries.npy (1,000 users).

Usage: python data/make_demo.py [--out data/demo]. Stdlib + numpy only; the same numpy gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

SEED = 20240611
DIM = 32
N_PRODUCTS = 5_000
N_QUERIES = 1_000
DECIMALS = 5
# Category -> relative size: uneven, as in a real catalogue.
CATEGORIES = {
    "main course": 22,
    "snacks": 16,
    "drinks": 14,
    "desserts": 11,
    "sides": 8,
    "breakfast": 7,
    "salads": 6,
    "soups": 5,
    "bakery": 4,
    "sauces": 3,
    "baby food": 2,
    "seasonal": 2,
}
SHARED_TASTE = 0.35  # weight of the direction all categories share (centroid cosines ~0.1 instead of ~0)
ITEM_NOISE = 1.8  # per-item noise norm vs. the unit centroid: ~87% of items are nearest their own centroid
ITEM_NORM_SIGMA = 0.75  # log-normal popularity: max / p1 of the norms is about 100 for 5,000 items
QUERY_NOISE = 0.8
QUERY_NORM_SIGMA = 0.5
DEFAULT_OUT = Path(__file__).resolve().parent / "demo"

Matrix = npt.NDArray[np.float64]


def unit_rows(x: Matrix) -> Matrix:
    unit: Matrix = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def noise(rng: np.random.Generator, n: int, scale: float) -> Matrix:
    """n random vectors whose norm is about `scale`."""
    vectors: Matrix = rng.standard_normal((n, DIM)) * (scale / np.sqrt(DIM))
    return vectors


def make_centroids(rng: np.random.Generator) -> Matrix:
    """Unit category directions sharing a common "popular taste" component, as ALS factors usually do."""
    shared = unit_rows(rng.standard_normal((1, DIM)))
    return unit_rows(SHARED_TASTE * shared + unit_rows(rng.standard_normal((len(CATEGORIES), DIM))))


def make_products(rng: np.random.Generator, centroids: Matrix) -> tuple[npt.NDArray[np.intp], Matrix]:
    weights = np.array(list(CATEGORIES.values()), dtype=np.float64)
    category = rng.choice(len(CATEGORIES), size=N_PRODUCTS, p=weights / weights.sum())
    directions = unit_rows(centroids[category] + noise(rng, N_PRODUCTS, ITEM_NOISE))
    norms = rng.lognormal(mean=0.0, sigma=ITEM_NORM_SIGMA, size=N_PRODUCTS)
    return category, directions * norms[:, None]


def make_queries(rng: np.random.Generator, centroids: Matrix) -> Matrix:
    """Users are not items: each likes 1-3 categories (Dirichlet weights) plus noise, with log-normal norms."""
    queries = np.empty((N_QUERIES, DIM))
    for q in range(N_QUERIES):
        liked = rng.choice(len(CATEGORIES), size=rng.integers(1, 4), replace=False)
        queries[q] = rng.dirichlet(np.ones(len(liked))) @ centroids[liked]
    directions = unit_rows(queries + noise(rng, N_QUERIES, QUERY_NOISE))
    return directions * rng.lognormal(mean=0.0, sigma=QUERY_NORM_SIGMA, size=N_QUERIES)[:, None]


def write_products(path: Path, category: npt.NDArray[np.intp], vectors: Matrix) -> None:
    names = list(CATEGORIES)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row, (cat, vector) in enumerate(zip(category, vectors.astype(np.float32), strict=True)):
            item = {"id": f"p{row:05d}", "category": names[cat], "vector": [round(float(v), DECIMALS) for v in vector]}
            f.write(json.dumps(item, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: data/demo)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    centroids = make_centroids(rng)
    category, vectors = make_products(rng, centroids)
    queries = make_queries(rng, centroids)
    write_products(out / "products.jsonl", category, vectors)
    np.save(out / "queries.npy", queries.astype(np.float32))
    print(f"wrote {N_PRODUCTS} products and {N_QUERIES} queries of dimension {DIM} to {out}")


if __name__ == "__main__":
    main()
