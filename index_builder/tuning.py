"""Ground truth, tie-aware recall, and the parameter sweep that picks default search parameters."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt

from index_builder.memory import release_pages
from index_format.layout import SweepPoint
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

QPS_QUERIES = 300  # at most this many single queries timed per sweep point ...
QPS_SECONDS = 0.4  # ... or until this much time has passed (at least QPS_MIN_QUERIES)
QPS_MIN_QUERIES = 10
TIE_RTOL = 1e-5  # float32: scores within this relative distance of the true k-th score count as ties
CONFIDENCE_Z = 1.645  # 95% one-sided
TRUTH_BLOCK_SCORES = 1 << 22  # query × row scores per block of the exact top-k (16 MiB; ~3x that in transients)


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
    scale = float(np.median(norms))  # rows may be sorted by norm: the first ones are not typical
    out: F32 = (mixed * max(scale, 1e-6)).astype(np.float32)
    return out


def exact_topk(
    vectors: F32, xq: F32, k: int, norms: F32 | None = None, progress: Callable[[int, int], None] | None = None
) -> tuple[F32, I64]:
    """Exact top-k by inner product of every query, batched: blocks of rows are copied into an aligned buffer (mapped
    rows are usually unaligned, and numpy only hands aligned arrays to BLAS) and scored for all queries at once.
    With `norms` (rows in descending-norm order), a query leaves the scan once ‖q‖·norm of the block's first row is
    below its k-th best score (Cauchy–Schwarz), as in the pruned scan. Mapped pages are released after each block."""
    n, d = vectors.shape
    nq = xq.shape[0]
    k = min(k, n)
    q = np.ascontiguousarray(xq, dtype=np.float32)
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    q_norms = np.linalg.norm(q, axis=1) * (1.0 + 1e-5)
    block = max(k, min(n, TRUTH_BLOCK_SCORES // max(nq, 1)))
    buffer = np.empty((block, d), dtype=np.float32)
    active = np.arange(nq)
    for start in range(0, n, block):
        stop = min(start + block, n)
        if norms is not None:
            active = active[q_norms[active] * float(norms[start]) >= best_s[active, k - 1]]
            if active.size == 0:
                break
        rows = buffer[: stop - start]
        np.copyto(rows, vectors[start:stop])
        release_pages(vectors, start, stop)
        scores = q[active] @ rows.T
        improves = active[(scores.max(axis=1) >= best_s[active, k - 1])]
        if improves.size:
            sub = scores[np.searchsorted(active, improves)]
            if sub.shape[1] > k:  # the block's own top-k first: merging whole blocks cost 6x their scores in RAM
                part = np.argpartition(-sub, k - 1, axis=1)[:, :k]
                block_s, block_i = np.take_along_axis(sub, part, axis=1), part + start
            else:
                block_s = sub
                block_i = np.broadcast_to(np.arange(start, stop, dtype=np.int64), sub.shape)
            merged_s = np.concatenate([best_s[improves], block_s], axis=1)
            merged_i = np.concatenate([best_i[improves], block_i], axis=1)
            order = np.argsort(-merged_s, axis=1, kind="stable")[:, :k]
            best_s[improves] = np.take_along_axis(merged_s, order, axis=1)
            best_i[improves] = np.take_along_axis(merged_i, order, axis=1)
        if progress is not None:
            progress(stop, n)
    if progress is not None:
        progress(n, n)
    return best_s, best_i


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


def single_query_qps(
    reader: IndexReader,
    xq: F32,
    k: int,
    params: dict[str, int] | None,
    exact: bool,
    max_seconds: float = QPS_SECONDS,
    max_queries: int = QPS_QUERIES,
) -> float:
    """Queries per second, one query per call on the calling thread (how the API searches); stops after
    `max_queries` or `max_seconds` (at least QPS_MIN_QUERIES), so a slow point costs a bounded time."""
    count = min(max_queries, xq.shape[0])
    reader.search(xq[:1], k, params, exact)
    started = time.perf_counter()
    done = 0
    while done < count:
        reader.search(xq[done : done + 1], k, params, exact)
        done += 1
        if done >= QPS_MIN_QUERIES and time.perf_counter() - started > max_seconds:
            break
    return float(done / (time.perf_counter() - started))


@contextlib.contextmanager
def blas_batches() -> Iterator[None]:
    """Let faiss score batches of flat queries with BLAS (recall measurement, not timing): by default it only does
    for nq·d ≥ 128000, and 500 tuning queries × 128 dimensions loop one query at a time (1M × 128: ~20 s vs ~2 s)."""
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


@dataclass
class SweepLimits:
    """When a sweep gives up: at `deadline` (clock time), or at a point that misses the target and is already
    slower than `beat_qps` (the fastest exact kind: more effort only makes it slower)."""

    deadline: float = float("inf")
    beat_qps: float | None = None
    clock: Callable[[], float] = time.monotonic


@dataclass
class SweepOutcome:
    points: list[SweepPoint]
    chosen: SweepPoint | None  # the fastest point whose tuning recall reaches the target with 95% confidence
    stopped: str | None = None  # why the sweep ended early, if it did
    measured: int = 0
    planned: int = 0
    fine: list[SweepPoint] = field(default_factory=list)


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
    limits: SweepLimits | None = None,
    on_point: Callable[[int, int], None] | None = None,
) -> SweepOutcome:
    """Coarse to fine. The first parameter of each grid point is the effort (nprobe, efSearch); the others (e.g.
    k_factor) make families. Coarse: walk the effort ladder of the most accurate family (largest secondary values)
    up to the first point reaching the target, then bisect the gap below it (the ladder steps by up to 1.5x:
    gowalla_als IVF reached 0.95 at nprobe 48 where 40 may do). Fine: each cheaper family is tried only at that
    effort and one ladder step above, cheaper families in turn until one misses. The fastest reaching point wins.
    Stops early at `limits` (deadline; a missing point already slower than the exact kind)."""
    limits = limits or SweepLimits()
    families: dict[tuple[tuple[str, int], ...], list[dict[str, int]]] = {}
    for params in grid:
        families.setdefault(_family_of(params), []).append(params)
    ordered = sorted(families, key=lambda f: tuple(v for _, v in f), reverse=True)
    planned = len(families[ordered[0]]) + REFINE_STEPS + 2 * (len(ordered) - 1)
    outcome = SweepOutcome([], None, planned=planned)

    def measure(params: dict[str, int]) -> tuple[SweepPoint, bool]:
        with blas_batches():
            tune_rows = reader.search(split.tune, k, params).rows
            held_rows = reader.search(split.heldout, k, params).rows
        tune_recalls = per_query_recall(vectors, split.tune, tune_rows, truth_tune, k)
        recall_heldout = tie_aware_recall(vectors, split.heldout, held_rows, truth_heldout, k)
        left = limits.deadline - limits.clock()
        qps = single_query_qps(reader, split.tune, k, params, False, min(QPS_SECONDS, max(0.05, left / 8)))
        point = SweepPoint(dict(params), round(float(tune_recalls.mean()), 4), round(recall_heldout, 4), round(qps, 1))
        outcome.points.append(point)
        outcome.measured += 1
        if on_point is not None:
            on_point(min(outcome.measured, outcome.planned), outcome.planned)
        return point, reaches_target(tune_recalls, split.tune_sets, target)

    def out_of_time() -> bool:
        if limits.clock() >= limits.deadline:
            outcome.stopped = outcome.stopped or "tuning budget used up"
            return True
        return False

    ladder: list[tuple[SweepPoint, bool]] = []
    for params in families[ordered[0]]:
        if out_of_time():
            break
        point, reaches = measure(params)
        ladder.append((point, reaches))
        if reaches:
            break
        if limits.beat_qps is not None and point.qps_single < limits.beat_qps:
            outcome.stopped = (
                f"abandoned at {params}: recall@{k} {point.recall_tune:.3f} below target and already slower "
                f"({point.qps_single:.0f} QPS) than the exact kind ({limits.beat_qps:.0f} QPS)"
            )
            break
    reaching = [point for point, reaches in ladder if reaches]
    if reaching and not out_of_time():
        refined = bisect_effort(ladder, measure, out_of_time)
        reaching += [point for point, reaches in refined if reaches]
    if reaching:
        best_effort = min(reaching, key=lambda p: _effort(p.params))
        reaching += _fine(families, ordered[1:], best_effort.params, measure, out_of_time)
    outcome.chosen = least_effort_fastest(reaching)
    outcome.points.sort(key=lambda p: (_family_of(p.params), _effort(p.params)))
    if on_point is not None:
        on_point(outcome.planned, outcome.planned)
    return outcome


def least_effort_fastest(reaching: list[SweepPoint]) -> SweepPoint | None:
    """Per family the least effort reaching the target (more effort only adds cost: a higher effort measured faster
    is timing noise), then the fastest of those."""
    least: dict[tuple[tuple[str, int], ...], SweepPoint] = {}
    for point in reaching:
        family = _family_of(point.params)
        if family not in least or _effort(point.params) < _effort(least[family].params):
            least[family] = point
    return max(least.values(), key=lambda p: p.qps_single) if least else None


def _fine(
    families: dict[tuple[tuple[str, int], ...], list[dict[str, int]]],
    cheaper: list[tuple[tuple[str, int], ...]],
    best: dict[str, int],
    measure: Callable[[dict[str, int]], tuple[SweepPoint, bool]],
    out_of_time: Callable[[], bool],
) -> list[SweepPoint]:
    """Cheaper families at the coarse stage's effort, or one ladder step above it; stop at the first that misses."""
    name, effort = next(iter(best)), _effort(best)
    found: list[SweepPoint] = []
    for family in cheaper:
        efforts = sorted({_effort(p) for p in families[family]})
        above = [e for e in efforts if e > effort][:1]
        reached = False
        for value in [effort, *above]:
            if out_of_time():
                return found
            point, reaches = measure({name: value, **dict(family)})
            if reaches:
                found.append(point)
                reached = True
                break
        if not reached:
            break
    return found


def _family_of(params: dict[str, int]) -> tuple[tuple[str, int], ...]:
    first = next(iter(params))
    return tuple(sorted((name, value) for name, value in params.items() if name != first))


def _effort(params: dict[str, int]) -> int:
    return params[next(iter(params))]


def bisect_effort(
    measured: list[tuple[SweepPoint, bool]],
    measure: Callable[[dict[str, int]], tuple[SweepPoint, bool]],
    out_of_time: Callable[[], bool] = lambda: False,
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
        if out_of_time():
            break
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
