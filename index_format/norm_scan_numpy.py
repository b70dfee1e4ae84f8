"""The numpy norm-ordered scan: what `index_format.norm_scan` runs when the C kernel was not built (no C compiler or
Python headers when the package was installed). Same answers (exact top-k, ties keep the lower row), ~2-5x slower:
it checks the Cauchy–Schwarz bound once per block of rows, and pays numpy's per-call cost on every block.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from index_format.inner_products import inner_products, inner_products_of_rows

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

BLOCK = 1024
_BOUND_SLACK = 1.0 + 1e-5  # float32 rounding can push a score a few ulps above the exact bound


def scan(vectors: F32, norms: F32, xq: F32, k: int, rows: I64 | None) -> tuple[F32, I64, int]:
    """(scores (nq, k), rows (nq, k), rows scored), as `norm_scan.norm_scan_batch`; inputs already checked."""
    if (
        rows is not None
        and rows.size
        and (rows[0] < 0 or rows[-1] >= vectors.shape[0] or bool(np.any(np.diff(rows) <= 0)))
    ):
        raise ValueError(f"rows must be strictly ascending row numbers in [0, {vectors.shape[0]})")
    nq = xq.shape[0]
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    scanned = 0
    for qi in range(nq):
        scores, found, count = _scan_one(vectors, norms, xq[qi], k, rows)
        out_s[qi, : scores.size] = scores
        out_i[qi, : found.size] = found
        scanned += count
    return out_s, out_i, scanned


def _scan_one(vectors: F32, norms: F32, q: F32, k: int, rows: I64 | None) -> tuple[F32, I64, int]:
    """After the first block only rows scoring at least the current k-th best are kept as candidates."""
    n = vectors.shape[0] if rows is None else rows.shape[0]
    q_norm = float(np.linalg.norm(q)) * _BOUND_SLACK
    cand_s = np.empty(0, dtype=np.float32)
    cand_i = np.empty(0, dtype=np.int64)
    kth = -np.inf
    start = 0
    while start < n:
        top_norm = float(norms[start] if rows is None else norms[rows[start]])
        if cand_s.size >= k and q_norm * top_norm < kth:
            break
        stop = min(start + BLOCK, n)
        if rows is None:
            scores = inner_products(vectors, q, start, stop)
            found_all = np.arange(start, stop, dtype=np.int64)
        else:
            scores = inner_products_of_rows(vectors, q, rows[start:stop])
            found_all = rows[start:stop]
        cand_s = np.concatenate([cand_s, scores])
        cand_i = np.concatenate([cand_i, found_all])
        if cand_s.size > k:  # best k by (score desc, row asc)
            top = np.lexsort((cand_i, -cand_s))[:k]
            cand_s, cand_i = cand_s[top], cand_i[top]
        if cand_s.size >= k:
            kth = float(cand_s.min())
        start = stop
    order = np.lexsort((cand_i, -cand_s))
    return cand_s[order], cand_i[order], start


def merge(vectors: F32, norms: F32, q: F32, scores: F32, rows: I64, subset: I64 | None, offset: int) -> int:
    """`norm_scan.merge_scan` without the kernel: every given row scored, merged by (score desc, row asc)."""
    candidates = np.arange(vectors.shape[0], dtype=np.int64) if subset is None else subset
    scanned_scores = (vectors[candidates] @ q).astype(np.float32)
    all_scores = np.concatenate([scores, scanned_scores])
    all_rows = np.concatenate([rows, candidates + offset])
    real = all_rows >= 0
    order = np.lexsort((np.where(real, all_rows, -1), -all_scores))[: scores.size]
    # a placeholder (row -1) is only a bar to beat: it is never returned as a result
    scores[:], rows[:] = all_scores[order], all_rows[order]
    rows[scores == -np.inf] = -1
    placeholder = rows < 0
    scores[placeholder] = -np.inf
    return int(candidates.size)
