"""Ground truth, tie-aware recall, and the parameter sweep that picks default search parameters."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from index_format.layout import SweepPoint
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

QPS_QUERIES = 300  # single queries timed per sweep point
TIE_RTOL = 1e-5
CONFIDENCE_Z = (
    1.645  # 95% one-sided  # float32: scores within this relative distance of the true k-th score count as ties
)


@dataclass
class QuerySplit:
    tune: F32
    heldout: F32
    source: str  # "file:<name>" or "sampled-items" (or "files:<a>,<b>" for several sets)
    tune_sets: I64 | None = None  # several query sets (index_builder/query_sets.py): the set of each query
    heldout_sets: I64 | None = None
    set_names: tuple[str, ...] = ()


def split_queries(queries: F32, seed: int, cap: int = 1000) -> tuple[F32, F32]:
    """Shuffle and cut into a tuning half and a disjoint held-out half (each at most `cap`)."""
    order = np.random.default_rng(seed).permutation(queries.shape[0])
    half = max(1, min(cap, queries.shape[0] // 2))
    tune = queries[order[:half]]
    heldout = queries[order[half : half + min(cap, queries.shape[0] - half)]]
    if heldout.shape[0] == 0:
        heldout = tune
    return np.ascontiguousarray(tune), np.ascontiguousarray(heldout)


def sampled_item_queries(vectors: F32, count: int, seed: int) -> F32:
    """Fallback queries when no user vectors are given: random items' directions plus noise, at the median item
    norm. They resemble users who liked one item; real user vectors (--queries) tune better."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(vectors.shape[0], size=min(count, vectors.shape[0]), replace=False)
    base = vectors[np.sort(rows)].astype(np.float32)
    norms = np.linalg.norm(base, axis=1, keepdims=True)
    directions = base / np.maximum(norms, 1e-12)
    noise = rng.standard_normal(directions.shape).astype(np.float32) / np.sqrt(vectors.shape[1])
    mixed = directions + 0.5 * noise
    mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    scale = float(np.median(np.linalg.norm(vectors[: min(vectors.shape[0], 100_000)], axis=1)))
    out: F32 = (mixed * max(scale, 1e-6)).astype(np.float32)
    return out


def exact_topk(vectors: F32, xq: F32, k: int) -> tuple[F32, I64]:
    """The reference: faiss IndexFlatIP over the raw vectors (all threads)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors))
    scores, rows = flat.search(xq, min(k, vectors.shape[0]))
    return scores, rows.astype(np.int64)


def per_query_recall(vectors: F32, xq: F32, found_rows: I64, true_scores: F32, k: int) -> npt.NDArray[np.float64]:
    """Tie-aware recall@k of each query: the fraction of its k slots filled by a true top-k item, where a row whose
    exact score equals the true k-th score (within float32 tolerance) counts, so ties at rank k are not misses.
    Scores are recomputed from the raw vectors: approximate scores (e.g. PQ codes) cannot inflate recall."""
    k = min(k, true_scores.shape[1])
    kth = true_scores[:, k - 1 : k].astype(np.float64)
    rows = found_rows[:, :k]
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    exact_scores = np.einsum("qkd,qd->qk", vectors[safe.ravel()].reshape(*safe.shape, -1), xq).astype(np.float64)
    hits = valid & (exact_scores >= kth - TIE_RTOL * np.abs(kth) - 1e-9)
    result: npt.NDArray[np.float64] = hits.sum(axis=1) / k
    return result


def tie_aware_recall(vectors: F32, xq: F32, found_rows: I64, true_scores: F32, k: int) -> float:
    """Mean of `per_query_recall`."""
    return float(per_query_recall(vectors, xq, found_rows, true_scores, k).mean())


def lower_bound(recalls: npt.NDArray[np.float64], z: float = CONFIDENCE_Z) -> float:
    """One-sided lower confidence bound of the mean recall: the tuning half is a sample of users, so a point is
    only chosen if it reaches the target with margin for the users it did not see."""
    if recalls.size < 2:
        return float(recalls.mean())
    return float(recalls.mean() - z * recalls.std(ddof=1) / np.sqrt(recalls.size))


def reaches_target(recalls: npt.NDArray[np.float64], sets: I64 | None, target: float) -> bool:
    """Whether the lower bound reaches the target: of the whole sample, or of every query set when there are several."""
    if sets is None:
        return lower_bound(recalls) >= target
    return all(lower_bound(recalls[sets == label]) >= target for label in np.unique(sets))


def single_query_qps(reader: IndexReader, xq: F32, k: int, params: dict[str, int] | None, exact: bool) -> float:
    """Queries per second, one query per call on the calling thread (how the API searches)."""
    count = min(QPS_QUERIES, xq.shape[0])
    reader.search(xq[:1], k, params, exact)
    started = time.perf_counter()
    for i in range(count):
        reader.search(xq[i : i + 1], k, params, exact)
    return float(count / (time.perf_counter() - started))


@dataclass
class SweepOutcome:
    points: list[SweepPoint]
    chosen: SweepPoint | None  # the fastest point whose tuning recall reaches the target with 95% confidence


REFINE_STEPS = 3  # bisections between the last ladder point below the target and the first one reaching it


def sweep(
    reader: IndexReader,
    vectors: F32,
    split: QuerySplit,
    truth_tune: F32,
    truth_heldout: F32,
    grid: list[dict[str, int]],
    k: int,
    target: float,
) -> SweepOutcome:
    """Measure recall (tuning and held-out halves) and QPS along the grid, cheapest first. For each family of
    points sharing every parameter but the first (the effort: nprobe or efSearch), stop once recall is near 1
    (more effort only costs speed). Then bisect the effort between the family's last point below the target and
    its first point reaching it (the ladder steps by up to 1.5x: gowalla_als IVF reached 0.95 at nprobe 48 where
    40 may do), and choose, per family, the least effort that reaches the target, and among families the fastest."""

    def measure(params: dict[str, int]) -> tuple[SweepPoint, bool]:
        tune_rows = reader.search(split.tune, k, params).rows
        tune_recalls = per_query_recall(vectors, split.tune, tune_rows, truth_tune, k)
        held_rows = reader.search(split.heldout, k, params).rows
        recall_heldout = tie_aware_recall(vectors, split.heldout, held_rows, truth_heldout, k)
        qps = single_query_qps(reader, split.tune, k, params, exact=False)
        recall_tune = float(tune_recalls.mean())
        point = SweepPoint(dict(params), round(recall_tune, 4), round(recall_heldout, 4), round(qps, 1))
        return point, reaches_target(tune_recalls, split.tune_sets, target)

    points: list[SweepPoint] = []
    families: dict[tuple[tuple[str, int], ...], list[tuple[SweepPoint, bool]]] = {}
    saturated: set[tuple[tuple[str, int], ...]] = set()
    for params in grid:
        family = _family_of(params)
        if family in saturated:
            continue
        point, reaches = measure(params)
        points.append(point)
        families.setdefault(family, []).append((point, reaches))
        if point.recall_tune >= max(0.995, target):
            saturated.add(family)
    best_of_family = []
    for measured in families.values():
        refined = bisect_effort(measured, measure)
        points.extend(point for point, _ in refined)
        reaching = [point for point, reaches in [*measured, *refined] if reaches]
        if reaching:
            best_of_family.append(min(reaching, key=lambda p: _effort(p.params)))
    chosen = max(best_of_family, key=lambda p: p.qps_single) if best_of_family else None
    points.sort(key=lambda p: (_family_of(p.params), _effort(p.params)))
    return SweepOutcome(points, chosen)


def _family_of(params: dict[str, int]) -> tuple[tuple[str, int], ...]:
    first = next(iter(params))
    return tuple(sorted((name, value) for name, value in params.items() if name != first))


def _effort(params: dict[str, int]) -> int:
    return params[next(iter(params))]


def bisect_effort(
    measured: list[tuple[SweepPoint, bool]], measure: Callable[[dict[str, int]], tuple[SweepPoint, bool]]
) -> list[tuple[SweepPoint, bool]]:
    """Points measured between the largest effort that misses the target and the smallest that reaches it."""
    reaching = [point.params for point, reaches in measured if reaches]
    if not reaching:
        return []
    high = min(reaching, key=_effort)
    below = [
        _effort(point.params) for point, reaches in measured if not reaches and _effort(point.params) < _effort(high)
    ]
    if not below:
        return []
    low, name = max(below), next(iter(high))
    refined = []
    for _ in range(REFINE_STEPS):
        middle = (low + _effort(high)) // 2
        if middle <= low:
            break
        params = {**high, name: middle}
        point, reaches = measure(params)
        refined.append((point, reaches))
        if reaches:
            high = params
        else:
            low = middle
    return refined
