"""Seeded synthetic recommender embeddings, shaped like implicit-ALS factors (calibrated on gowalla_als).

Items: directions from a mixture of ~100 Gaussian clusters on the sphere with uneven sizes, all sharing a
common "popularity" direction (as ALS item factors do: mean cosine of random item pairs ≈ 0.14-0.17); norms
heavy-tailed: log-norm = per-cluster offset (popular communities) + Student-t per item. Queries are made
separately, as users: a mixture of 1-2 cluster directions (with the common direction mostly removed, as ALS user
factors are nearly orthogonal to it) plus noise, with their own log-normal norms. No query is an item.

Generated in fixed-size chunks, each with its own seed, so 3M×128 never needs a float64 copy of the whole matrix
and the output does not depend on available memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

CHUNK = 131_072


@dataclass(frozen=True)
class SyntheticSpec:
    """Defaults were chosen by comparing HNSW/IVF recall curves and norm statistics with gowalla_als (README)."""

    n: int
    d: int
    n_queries: int = 1000
    seed: int = 0
    clusters: int = 100
    cluster_weight_sigma: float = 1.0  # cluster sizes ∝ log-normal weights: a few big, many small
    spread: float = 0.6  # within-cluster angular noise (norm of the noise relative to the unit centre)
    common: float = 0.5  # weight of the shared item direction in every cluster centre
    norm_median: float = 0.07
    norm_scale: float = 0.30  # scale of the Student-t part of log-norm
    norm_df: float = 8.0
    cluster_norm_sigma: float = 0.45  # std of the per-cluster log-norm offset
    query_clusters: int = 2  # a user mixes 1..query_clusters cluster directions
    query_spread: float = 0.2
    query_common: float = 0.05
    query_norm_median: float = 2.15
    query_norm_sigma: float = 0.52


@dataclass
class SyntheticData:
    items: F32
    queries: F32
    spec: SyntheticSpec

    def describe(self) -> dict[str, Any]:
        return {"generator": "benchmarks.synthetic", "spec": asdict(self.spec), "item_norms": norm_spread(self.items)}


def _unit(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: npt.NDArray[Any] = x / np.maximum(norms, 1e-12)
    return out


@dataclass(frozen=True)
class _Structure:
    common: F32  # (d,)
    centres: F32  # (clusters, d) unit
    residuals: F32  # centres without the common direction, unit
    weights: npt.NDArray[np.float64]  # cluster probabilities
    spreads: F32  # per-cluster angular noise
    log_norm_offset: F32  # per-cluster log-norm offset


def _structure(spec: SyntheticSpec) -> _Structure:
    rng = np.random.default_rng([spec.seed, 0])
    d = spec.d
    common = _unit(rng.standard_normal(d)).astype(np.float32)
    centres = _unit(rng.standard_normal((spec.clusters, d)))
    centres = _unit(centres + spec.common * common).astype(np.float32)
    residuals = _unit(centres - np.outer(centres @ common, common)).astype(np.float32)
    weights = rng.lognormal(0.0, spec.cluster_weight_sigma, spec.clusters)
    spreads = (rng.uniform(0.6, 1.4, spec.clusters) * spec.spread).astype(np.float32)
    offsets = (spec.cluster_norm_sigma * rng.standard_normal(spec.clusters)).astype(np.float32)
    return _Structure(common, centres, residuals, weights / weights.sum(), spreads, offsets)


def generate_items(spec: SyntheticSpec, out: F32 | None = None) -> F32:
    """(n, d) float32 items; `out` may be a preallocated (or memory-mapped) array to fill."""
    s = _structure(spec)
    items: F32 = out if out is not None else np.empty((spec.n, spec.d), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(spec.d))
    for chunk, start in enumerate(range(0, spec.n, CHUNK)):
        stop = min(start + CHUNK, spec.n)
        rng = np.random.default_rng([spec.seed, 1, chunk])
        labels = rng.choice(spec.clusters, size=stop - start, p=s.weights)
        noise = rng.standard_normal((stop - start, spec.d), dtype=np.float32)
        directions = s.centres[labels] + noise * (s.spreads[labels] * scale)[:, None]
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        log_norm = (
            np.log(spec.norm_median)
            + spec.norm_scale * rng.standard_t(spec.norm_df, stop - start)
            + s.log_norm_offset[labels]
        )
        items[start:stop] = directions * np.exp(log_norm).astype(np.float32)[:, None]
    return items


def generate_queries(spec: SyntheticSpec, count: int | None = None, stream: int = 0) -> F32:
    """User-like queries, independent of the items; `stream` gives further disjoint query sets (e.g. for tuning)."""
    s = _structure(spec)
    count = spec.n_queries if count is None else count
    rng = np.random.default_rng([spec.seed, 2, stream])
    mixture = rng.integers(1, spec.query_clusters + 1, count)
    directions = np.zeros((count, spec.d), dtype=np.float64)
    for part in range(spec.query_clusters):
        has = mixture > part
        labels = rng.choice(spec.clusters, size=count, p=s.weights)[has]
        directions[has] += s.residuals[labels] * rng.uniform(0.3, 1.0, int(has.sum()))[:, None]
    directions = _unit(directions) + spec.query_common * s.common
    directions += rng.standard_normal((count, spec.d)) * (spec.query_spread / np.sqrt(spec.d))
    norms = np.exp(np.log(spec.query_norm_median) + spec.query_norm_sigma * rng.standard_normal(count))
    queries: F32 = (_unit(directions) * norms[:, None]).astype(np.float32)
    return queries


def generate(spec: SyntheticSpec) -> SyntheticData:
    return SyntheticData(generate_items(spec), generate_queries(spec), spec)


def norm_spread(vectors: F32, sample: int = 1_000_000) -> dict[str, float]:
    """Norm percentiles and the two spread ratios quoted in the README (p99/median and max/min)."""
    norms = np.linalg.norm(vectors[:sample], axis=1)
    p1, p50, p99 = (float(v) for v in np.percentile(norms, [1, 50, 99]))
    low, high = float(norms.min()), float(norms.max())
    return {
        "min": low,
        "p1": p1,
        "median": p50,
        "p99": p99,
        "max": high,
        "p99_over_median": p99 / p50 if p50 > 0 else float("inf"),
        "max_over_min": high / low if low > 0 else float("inf"),
    }
