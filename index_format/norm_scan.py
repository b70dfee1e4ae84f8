"""Exact top-k inner-product search over rows stored in descending-norm order.

Recommender embeddings (matrix factorisation, two-tower) have very unequal norms, and the top-k by inner
product is dominated by large-norm items. With rows sorted by norm, every row from ``i`` on scores at most
``‖q‖ · norms[i]`` (Cauchy–Schwarz), so the scan stops once that bound falls below the current k-th best score. On
gowalla_als this visits ~5% of the rows at the median; on unit-norm data it scans everything.

The scan itself is the small C kernel `index_format._norm_scan` (built by setup.py on ``pip install``; without a C
compiler the install still succeeds and `index_format.norm_scan_numpy` answers instead, logging a warning). Measured on
gowalla_als (41k × 64, one thread, 2,000 queries): the best numpy version (blocks of 512–2,048 rows through faiss's
inner-product kernel, Cauchy–Schwarz stop per block) spent ~60 µs per query, most of it in per-block numpy calls;
the kernel checks the bound before every group of 8 rows (one multiply and compare), so it stops within 7 rows of
the ideal row, keeps the top-k in a heap, and answers in a few µs plus the Python call (figures: benchmarks/README.md).

Where a single query's time goes (gowalla_als, one thread, 2,000 queries, 2026-12-02, issue 11): 2,426 rows scored
on average (5.9% of 40,981); the kernel ~12 µs (near the cost of streaming those 620 KB through the FMA units:
rows repeated from L1 took ~10 µs), this wrapper ~1 µs, `IndexReader.search` (planning, result) ~4 µs more; faiss's
flat scan ~220 µs. Direction-aware bounds were measured offline before building them: with the true k-th score,
spherical k-means groups inside norm bands bounded by ‖q‖·max‖x‖·cos(angle to centre − radius) would score at most
28% fewer rows (1,982 vs 2,743 on average, groups of 16 rows), before paying for the group bounds — not built.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from index_format import norm_scan_numpy

LOG = logging.getLogger(__name__)

try:
    from index_format import _norm_scan  # type: ignore[attr-defined,unused-ignore]

    KERNEL = "c"
except ImportError:  # installed without a C compiler or Python headers: setup.py builds the kernel as optional
    _norm_scan = None
    KERNEL = "numpy"
    LOG.warning("index_format._norm_scan was not built: exact search uses the slower numpy scan")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


def norm_scan(vectors: F32, norms: F32, xq: F32, k: int, rows: I64 | None = None) -> tuple[F32, I64]:
    """Exact top-k of ``xq @ vectors[rows].T`` (see `norm_scan_batch`)."""
    scores, found, _ = norm_scan_batch(vectors, norms, xq, k, rows)
    return scores, found


def merge_scan(vectors: F32, norms: F32, q: F32, scores: F32, rows: I64, subset: I64 | None, offset: int) -> int:
    """Merge the rows of ``vectors`` (or of its ascending `subset`) into one query's top-k, in place: `scores` and
    `rows` ((k,) float32 / int64, writable, best first on return) hold k results to start from (row -1: a placeholder
    to beat, e.g. a floor); a scanned row enters only by beating the k-th, numbered row + `offset`, and the scan stops
    at the first row whose norm cannot. For arrays checked once when loaded (float32, C-contiguous, matching shapes):
    a delta segment's scan after the main search costs ~0.8 µs where a checked call costs ~2 µs. Returns the rows
    scored. The kernel still refuses buffers it would misread."""
    if _norm_scan is None:
        return norm_scan_numpy.merge(vectors, norms, q, scores, rows, subset, offset)
    scanned: int = _norm_scan.scan(vectors, norms, q, vectors.shape[1], scores.size, subset, scores, rows, True, offset)
    return scanned


FINISH_IN_KERNEL = _norm_scan is not None  # whether `finish_one` can run (else the engine's Python path does it)


def finish_one(
    rows: I64,
    scores: F32,
    k: int,
    hidden: npt.NDArray[np.bool_] | None,
    delta: tuple[F32, F32, I64 | None, int] | None,
    q: F32,
) -> tuple[F32, I64] | None:
    """One query's answer from what its main search fetched, in one kernel call (only where FINISH_IN_KERNEL): the
    first k rows not `hidden` (a mask over the main rows), then the delta segment (vectors, norms, ascending subset
    or None, row offset) merged in as `merge_scan` does. Returns (scores, rows) without padding, or None when hidden
    rows left fewer than k of an unpadded fetch (search again around them). Each Python step of this finish cost
    ~1-3k instructions per query (callgrind), a tenth of what a changed catalogue added to /infer."""
    assert _norm_scan is not None, "finish_one needs the C kernel (FINISH_IN_KERNEL)"
    out_scores = np.empty(k, dtype=np.float32)
    out_rows = np.empty(k, dtype=np.int64)
    vectors, norms, subset, offset = delta if delta is not None else (None, None, None, 0)
    count: int = _norm_scan.finish(rows, scores, k, hidden, vectors, norms, q, subset, offset, out_scores, out_rows)
    if count < 0:
        return None
    return out_scores[:count], out_rows[:count]


def norm_scan_batch(
    vectors: F32, norms: F32, xq: F32, k: int, rows: I64 | None = None, floor: float = -np.inf
) -> tuple[F32, I64, int]:
    """Exact top-k of ``xq @ vectors[rows].T``.

    vectors: (N, d) float32 rows sorted by descending L2 norm (C-contiguous; may be unaligned, e.g. faiss's mapped
    codes); norms: (N,) float32 those norms; xq: (nq, d) queries.
    rows: optional strictly ascending row numbers to restrict the search to (ascending rows = descending norms).
    Returns (scores (nq, k), rows (nq, k), rows scored over all queries), best first; ties keep the lower row;
    missing results (fewer than k rows) are row -1 with score -inf.
    floor: only rows scoring above it are returned (the rest is padding), and the scan stops as soon as no row can
    (a delta segment's scan under the main results' k-th score: index_format/delta.py).
    """
    # Checks cost ~1 µs of a ~10 µs query: dtype identity (builtin dtypes are singletons) instead of equality; the
    # kernel's buffer request refuses non-contiguous vectors and norms (ValueError from numpy).
    if vectors.dtype is not _F32 or vectors.ndim != 2:
        raise ValueError("vectors must be a C-contiguous float32 (N, d) array")
    if norms.dtype is not _F32 or norms.shape != (vectors.shape[0],):
        raise ValueError(f"norms must be float32 of shape ({vectors.shape[0]},)")
    d = vectors.shape[1]
    if xq.ndim != 2 or xq.shape[1] != d:
        raise ValueError(f"queries of shape {xq.shape}, expected (nq, {d})")
    xq = np.ascontiguousarray(xq, dtype=_F32)
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=_I64)
    nq = xq.shape[0]
    if k <= 0 or nq == 0 or d == 0:
        return np.zeros((nq, max(k, 0)), np.float32), np.zeros((nq, max(k, 0)), np.int64), 0
    if _norm_scan is None:
        if not vectors.flags.c_contiguous:
            raise ValueError("ndarray is not C-contiguous")  # as the kernel's buffer request says
        scores, found, scanned = norm_scan_numpy.scan(vectors, norms, xq, k, rows)
        below = ~(scores > floor)
        scores[below], found[below] = -np.inf, -1  # best first: the padding stays at the end
        return scores, found, scanned
    if floor > -np.inf:  # placeholders scoring the floor: rows must beat them
        scores, found = np.full((nq, k), floor, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        return scores, found, _norm_scan.scan(vectors, norms, xq, d, k, rows, scores, found, True)
    scores = np.empty((nq, k), dtype=np.float32)
    found = np.empty((nq, k), dtype=np.int64)
    return scores, found, _norm_scan.scan(vectors, norms, xq, d, k, rows, scores, found)
