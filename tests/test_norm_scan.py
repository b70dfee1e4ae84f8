"""index_format.norm_scan (the C kernel, and its numpy fallback) against float64 brute force on seeded, norm-skewed
data: every stopping point, filtered rows, k larger than the allowed rows, exact ties, several queries per call,
unaligned mapped-like rows, and refusal of inputs the kernel would misread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from index_format import norm_scan as norm_scan_module
from index_format.norm_scan import FINISH_IN_KERNEL, finish_one, merge_scan, norm_scan, norm_scan_batch

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@pytest.fixture(params=["c", "numpy"], autouse=True)
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the C kernel and on the numpy fallback (used when the kernel could not be built)."""
    if request.param == "numpy":
        monkeypatch.setattr(norm_scan_module, "_norm_scan", None)
    elif norm_scan_module._norm_scan is None:
        pytest.skip("the C kernel was not built (no C compiler or Python headers at install)")
    return str(request.param)


def sorted_rows(x: npt.NDArray[np.float64]) -> tuple[F32, F32]:
    x = x[np.argsort(-np.linalg.norm(x, axis=1), kind="stable")].astype(np.float32)
    return x, np.linalg.norm(x, axis=1).astype(np.float32)


def brute_force(vectors: F32, xq: F32, k: int, rows: I64 | None) -> tuple[F32, I64]:
    """Top-k by (score desc, row asc) in float64, padded with (-inf, -1)."""
    candidates = np.arange(vectors.shape[0]) if rows is None else rows
    scores = xq.astype(np.float64) @ vectors[candidates].astype(np.float64).T
    out_s = np.full((xq.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((xq.shape[0], k), -1, dtype=np.int64)
    for qi in range(xq.shape[0]):
        order = np.lexsort((candidates, -scores[qi]))[:k]
        out_s[qi, : order.size] = scores[qi, order]
        out_i[qi, : order.size] = candidates[order]
    return out_s, out_i


def assert_exact(vectors: F32, xq: F32, k: int, rows: I64 | None, got_s: F32, got_i: I64) -> None:
    """Tie-aware: the scores equal the true top-k scores rank by rank, every returned row really has its score,
    rows are distinct and allowed, and padding appears exactly where fewer than k rows exist."""
    true_s, true_i = brute_force(vectors, xq, k, rows)
    np.testing.assert_array_equal(got_i < 0, true_i < 0)
    np.testing.assert_allclose(got_s, true_s, rtol=1e-5, atol=1e-5)
    allowed = set(range(vectors.shape[0])) if rows is None else set(rows.tolist())
    for qi in range(xq.shape[0]):
        real = got_i[qi][got_i[qi] >= 0]
        assert len(set(real.tolist())) == real.size
        assert set(real.tolist()) <= allowed
        np.testing.assert_allclose(got_s[qi, : real.size], vectors[real] @ xq[qi], rtol=1e-5, atol=1e-5)
        assert np.all(np.isneginf(got_s[qi, real.size :]))


@pytest.mark.parametrize("seed", range(5))
def test_norm_scan_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(40):
        n, d = int(rng.integers(1, 1200)), int(rng.integers(1, 40))
        x = rng.standard_normal((n, d)) * rng.lognormal(0.0, 1.0, (n, 1))
        if trial % 4 == 0:  # exact ties: duplicated rows
            x[n // 2 :] = x[: n - n // 2]
        vectors, norms = sorted_rows(x)
        xq = (rng.standard_normal((int(rng.integers(1, 6)), d)) * rng.lognormal(0.0, 1.0)).astype(np.float32)
        k = int(rng.integers(1, 30))
        rows = np.sort(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)) if trial % 3 == 0 else None
        got_s, got_i, scanned = norm_scan_batch(vectors, norms, xq, k, rows)
        assert got_s.shape == got_i.shape == (xq.shape[0], k)
        assert 0 <= scanned <= xq.shape[0] * (n if rows is None else rows.size)
        assert_exact(vectors, xq, k, rows, got_s, got_i)


def test_stops_early_on_norm_skewed_rows_and_scans_everything_on_equal_norms() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, 16)) * rng.lognormal(0.0, 1.0, (20_000, 1))
    vectors, norms = sorted_rows(x)
    xq = rng.standard_normal((20, 16)).astype(np.float32)
    got_s, got_i, scanned = norm_scan_batch(vectors, norms, xq, 10)
    assert_exact(vectors, xq, 10, None, got_s, got_i)
    assert scanned < 0.2 * 20 * 20_000
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    unit_norms = np.ones(unit.shape[0], dtype=np.float32)
    _, _, scanned_unit = norm_scan_batch(unit, unit_norms, xq, 10)
    assert scanned_unit > 0.9 * 20 * 20_000  # nothing to prune: the bound never drops below the k-th score


@pytest.mark.parametrize("seed", range(3))
def test_a_floor_keeps_only_rows_above_it_and_stops_sooner(seed: int) -> None:
    """norm_scan_batch(..., floor): the brute-force top-k restricted to scores above the floor (padding for the rest),
    for floors from below every score to above them all, filtered or not, one query or several; and the kernel
    scans no more rows than without the floor."""
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((3000, 24)) * rng.lognormal(0.0, 1.0, (3000, 1))
    vectors, norms = sorted_rows(x)
    xq = rng.standard_normal((4, 24)).astype(np.float32)
    k = 12
    for rows in (None, np.sort(rng.choice(3000, 900, replace=False))):
        true_s, true_i = brute_force(vectors, xq, 3000, rows)
        _, _, scanned_without = norm_scan_batch(vectors, norms, xq, k, rows)
        for quantile in (0.0, 0.5, 0.99, 0.9995, 1.0):
            floor = float(np.quantile(true_s[:, : (3000 if rows is None else 900)], quantile)) + (quantile == 1.0)
            got_s, got_i, scanned = norm_scan_batch(vectors, norms, xq, k, rows, floor)
            for qi in range(xq.shape[0]):
                above = true_s[qi] > floor
                want = true_i[qi][above][:k]
                assert got_i[qi, : want.size].tolist() == want.tolist() or np.allclose(
                    got_s[qi, : want.size], true_s[qi][above][:k], rtol=1e-5, atol=1e-5
                )
                assert np.all(got_i[qi, want.size :] == -1) and np.all(np.isneginf(got_s[qi, want.size :]))
                assert np.all(got_s[qi, : want.size] > floor)
            assert scanned <= scanned_without


@pytest.mark.parametrize("seed", range(3))
def test_merge_scan_merges_rows_into_given_results(seed: int) -> None:
    """merge_scan (a delta segment merged into the main results): the k best of (given results ∪ scanned rows
    numbered + offset), ties keeping the lower number, equal to brute force over both; given placeholders (row -1)
    are bars to beat, never results; a subset of the scanned rows is honoured."""
    rng = np.random.default_rng(200 + seed)
    x = rng.standard_normal((400, 16)) * rng.lognormal(0.0, 1.0, (400, 1))
    vectors, norms = sorted_rows(x)
    main = rng.standard_normal((5000, 16)).astype(np.float32) * 2
    offset, k = 5000, 10
    for trial in range(20):
        q = rng.standard_normal(16).astype(np.float32)
        subset = np.sort(rng.choice(400, 150, replace=False)) if trial % 2 else None
        main_scores = main @ q
        best = np.argsort(-main_scores, kind="stable")[:k]
        scores, rows = main_scores[best].astype(np.float32), best.astype(np.int64)
        if trial % 5 == 4:  # a short main answer: placeholders at the tail
            scores[7:], rows[7:] = -np.inf, -1
        pool_rows = np.concatenate([rows[rows >= 0], (np.arange(400) if subset is None else subset) + offset])
        pool_scores = np.concatenate([scores[rows >= 0], vectors[pool_rows[(rows >= 0).sum() :] - offset] @ q])
        order = np.lexsort((pool_rows, -pool_scores))[:k]
        merge_scan(vectors, norms, q, scores, rows, subset, offset)
        np.testing.assert_allclose(scores, pool_scores[order], rtol=1e-5, atol=1e-5)
        assert sorted(rows.tolist()) == sorted(pool_rows[order].tolist()) or np.allclose(
            np.sort(scores), np.sort(pool_scores[order]), rtol=1e-6
        )
        assert np.all(np.diff(scores) <= 0) and np.all(rows >= 0)


@pytest.mark.parametrize("seed", range(3))
def test_finish_one_drops_hidden_rows_and_merges_the_delta(seed: int, kernel: str) -> None:
    """finish_one (a changed catalogue's query finished in one kernel call): the first k fetched rows not hidden,
    merged with the delta (rows numbered + offset), equals brute force over (fetched rows not hidden) ∪ delta; a
    fetch left short by hidden rows asks for a second search (None); a padded fetch is answered with what exists."""
    if kernel == "numpy" or not FINISH_IN_KERNEL:
        pytest.skip("finish_one is the kernel's (the engine's Python path covers the numpy fallback)")
    rng = np.random.default_rng(300 + seed)
    delta_x = rng.standard_normal((300, 16)) * rng.lognormal(0.0, 1.0, (300, 1))
    vectors, norms = sorted_rows(delta_x)
    main = (rng.standard_normal((4000, 16)) * 2).astype(np.float32)
    hidden = np.zeros(4000, dtype=bool)
    hidden[rng.choice(4000, 400, replace=False)] = True
    k, offset = 10, 4000
    for trial in range(30):
        q = rng.standard_normal(16).astype(np.float32)
        fetch = 13
        order = np.argsort(-(main @ q), kind="stable")[:fetch]
        rows, scores = order.astype(np.int64), (main @ q)[order].astype(np.float32)
        if trial % 6 == 5:  # a short fetch: padding at the tail
            rows[8:], scores[8:] = -1, -np.inf
        subset = np.sort(rng.choice(300, 120, replace=False)) if trial % 2 else None
        with_delta = trial % 3 != 0
        delta = (vectors, norms, subset, offset) if with_delta else None
        got = finish_one(rows, scores, k, hidden, delta, q)
        real = rows >= 0
        visible = real & ~hidden[np.maximum(rows, 0)]
        if visible.sum() < k and real.all():
            assert got is None  # hidden rows took places of a full fetch
            continue
        assert got is not None
        pool_rows, pool_scores = rows[visible][:k], scores[visible][:k]
        if with_delta:
            candidates = np.arange(300) if subset is None else subset
            pool_rows = np.concatenate([pool_rows, candidates + offset])
            pool_scores = np.concatenate([pool_scores, vectors[candidates] @ q])
        want = np.lexsort((pool_rows, -pool_scores))[:k]
        got_scores, got_rows = got
        np.testing.assert_allclose(got_scores, pool_scores[want], rtol=1e-5, atol=1e-5)
        assert got_rows.size == min(k, pool_rows.size) and np.all(got_rows >= 0)
        assert not np.any(hidden[got_rows[got_rows < offset]])


def test_ties_keep_the_earlier_row() -> None:
    vectors = np.ones((50, 4), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
    scores, rows = norm_scan(vectors, norms, np.ones((2, 4), dtype=np.float32), 5)
    assert rows.tolist() == [[0, 1, 2, 3, 4]] * 2
    np.testing.assert_array_equal(scores, np.full((2, 5), 4.0, dtype=np.float32))


def test_k_larger_than_the_allowed_rows_pads() -> None:
    rng = np.random.default_rng(3)
    vectors, norms = sorted_rows(rng.standard_normal((100, 8)))
    xq = rng.standard_normal((3, 8)).astype(np.float32)
    allowed = np.array([4, 17, 60], dtype=np.int64)
    scores, rows = norm_scan(vectors, norms, xq, 10, allowed)
    assert_exact(vectors, xq, 10, allowed, scores, rows)
    assert (rows[:, 3:] == -1).all() and sorted(rows[0, :3].tolist()) == [4, 17, 60]
    scores, rows = norm_scan(vectors, norms, xq, 5, np.empty(0, dtype=np.int64))
    assert (rows == -1).all() and np.isneginf(scores).all()
    scores, rows = norm_scan(vectors, norms, xq, 200)  # k > N
    assert_exact(vectors, xq, 200, None, scores, rows)


def test_unaligned_rows_as_faiss_maps_them() -> None:
    """faiss's mapped codes start after its header: the float32 view is usually not 4-byte aligned."""
    rng = np.random.default_rng(11)
    vectors, norms = sorted_rows(rng.standard_normal((3000, 37)) * rng.lognormal(0.0, 1.0, (3000, 1)))
    raw = np.empty(vectors.nbytes + 3, dtype=np.uint8)
    unaligned = raw[3:].view(np.float32).reshape(vectors.shape)
    unaligned[:] = vectors
    assert not unaligned.flags.aligned
    xq = rng.standard_normal((4, 37)).astype(np.float32)
    rows = np.arange(0, 3000, 7, dtype=np.int64)
    for subset in (None, rows):
        scores, found = norm_scan(unaligned, norms, xq, 10, subset)
        assert_exact(vectors, xq, 10, subset, scores, found)


def test_refuses_inputs_it_would_misread() -> None:
    vectors = np.ones((10, 4), dtype=np.float32)
    norms = np.full(10, 2.0, dtype=np.float32)
    q = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="expected"):
        norm_scan(vectors, norms, np.ones((1, 5), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="norms"):
        norm_scan(vectors, norms[:5], q, 3)
    with pytest.raises(ValueError, match="float32"):
        norm_scan(vectors.astype(np.float64), norms, q, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ascending"):
        norm_scan(vectors, norms, q, 3, np.array([0, 10], dtype=np.int64))
    with pytest.raises(ValueError, match="ascending"):
        norm_scan(vectors, norms, q, 3, np.array([3, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="ascending"):
        norm_scan(vectors, norms, q, 3, np.array([-1, 2], dtype=np.int64))


@pytest.mark.parametrize("skew", [0.0, 1.0])
def test_batches_share_blocks_and_answer_as_single_queries_do(skew: float) -> None:
    """Queries of a batch walk the rows together in blocks (each stopping on its own): same answers as one by one."""
    rng = np.random.default_rng(21)
    vectors, norms = sorted_rows(rng.standard_normal((5000, 24)) * rng.lognormal(0.0, skew, (5000, 1)))
    xq = rng.standard_normal((37, 24)).astype(np.float32)
    for rows in (None, np.sort(rng.choice(5000, 3100, replace=False)).astype(np.int64)):
        scores, found, scanned = norm_scan_batch(vectors, norms, xq, 12, rows)
        assert_exact(vectors, xq, 12, rows, scores, found)
        one_by_one = [norm_scan_batch(vectors, norms, xq[i : i + 1], 12, rows) for i in range(37)]
        np.testing.assert_array_equal(found, np.concatenate([r[1] for r in one_by_one]))
        np.testing.assert_array_equal(scores, np.concatenate([r[0] for r in one_by_one]))
        assert scanned == sum(r[2] for r in one_by_one)


def test_non_contiguous_inputs_are_refused_or_copied() -> None:
    rng = np.random.default_rng(5)
    vectors, norms = sorted_rows(rng.standard_normal((60, 8)))
    with pytest.raises(ValueError, match="C-contiguous"):  # numpy's buffer export refuses it
        norm_scan(np.asfortranarray(vectors), norms, np.ones((1, 8), dtype=np.float32), 3)
    xq = rng.standard_normal((8, 3)).T  # float64, not C-contiguous: converted
    rows = np.arange(0, 60, 2, dtype=np.int64)[::2]  # strided view: copied
    scores, found = norm_scan(vectors, norms, xq, 4, rows)  # type: ignore[arg-type]
    assert_exact(vectors, xq.astype(np.float32), 4, np.ascontiguousarray(rows), scores, found)


def test_kernel_runs_its_avx2_variant_where_the_cpu_has_it() -> None:
    """The AVX2+FMA scan is picked by CPU features: GCC's target_clones("arch=haswell") dispatched on the CPU model
    and ran the SSE2 clone on an AMD EPYC with AVX2 (gowalla_als kernel time 31 -> 18 µs per query once fixed)."""
    if norm_scan_module._norm_scan is None:
        pytest.skip("the C kernel was not built")
    try:
        flags = next(
            set(line.split(":", 1)[1].split())
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags")
    import platform

    if platform.machine() != "x86_64" or not {"avx2", "fma"} <= flags:
        pytest.skip("no AVX2+FMA on this CPU")
    assert norm_scan_module._norm_scan.simd == "avx2+fma"


@pytest.mark.parametrize("n", [5, 8, 13, 4096, 5003])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_unfiltered_groups_of_eight_equal_brute_force(n: int, k: int) -> None:
    """The unfiltered path scores consecutive groups of 8 rows and drops a group whose scores all miss the k-th best:
    norm-skewed rows (so it stops early), sizes around multiples of 8 and k > n, and exact ties across group
    boundaries (each row duplicated 3 rows later: equal scores land in different groups)."""
    rng = np.random.default_rng(n * 1000 + k)
    x = rng.standard_normal((n, 16)) * rng.lognormal(0.0, 1.2, (n, 1))
    x[3::7] = x[: x[3::7].shape[0]]
    vectors, norms = sorted_rows(x)
    xq = (rng.standard_normal((7, 16)) * rng.lognormal(0.0, 1.0, (7, 1))).astype(np.float32)
    for qi in range(xq.shape[0]):  # one query per call: the single-query path the service takes
        got_s, got_i, _ = norm_scan_batch(vectors, norms, xq[qi : qi + 1], k)
        assert_exact(vectors, xq[qi : qi + 1], k, None, got_s, got_i)
    got_s, got_i, _ = norm_scan_batch(vectors, norms, xq, k)  # and batched
    assert_exact(vectors, xq, k, None, got_s, got_i)
