"""Index kinds: how each is constructed, which search parameter it exposes, and the sweep used to tune it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import faiss

KINDS = ("auto", "flat", "pruned", "hnsw", "ivf", "ivfpq", "ivffs", "factory")
EXACT_KINDS = ("flat", "pruned")

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
EF_SEARCH_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)
NPROBE_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
K_FACTORS = (4, 8, 16, 32)


@dataclass
class KindSpec:
    """kind: our name; factory: faiss index_factory string; grid: per-call params to sweep, cheapest first
    (an empty grid means exact); exact_method: how `exact: true` searches this kind (see index_format.reader);
    raw_copy: the index file keeps no raw vectors in row order (IVF lists), so the builder stores a norm-ordered
    copy beside it (`layout.RAW_VECTORS_FILE`) for the exact scan; per_worker_bytes: what faiss copies into each
    process instead of mapping (FAISS_NOTES: fast-scan codes)."""

    kind: str
    factory: str
    grid: list[dict[str, int]] = field(default_factory=list)
    exact_method: str = "norm_scan"
    train_size: int = 0
    hnsw_ef_construction: int = 0
    raw_copy: bool = False
    per_worker_bytes: int = 0  # not memory-mapped: every serving process holds its own copy of this many bytes

    @property
    def exact(self) -> bool:
        return not self.grid


def nlist_for(n: int) -> int:
    """Number of IVF lists: the power of two nearest 2·√n, at least 16."""
    return max(16, int(2 ** round(math.log2(2 * math.sqrt(max(n, 1))))))


def pq_subquantizers(d: int) -> int:
    """Largest divisor of d not above min(64, d/4): about 4 dimensions per byte of code."""
    cap = max(1, min(64, d // 4))
    return max(m for m in range(1, cap + 1) if d % m == 0)


def _refined_ivf(kind: str, n: int, codes: str) -> KindSpec:
    """IVF lists of compressed codes re-ranked exactly on the raw vectors (RFlat): nprobe × k_factor grid."""
    nlist = nlist_for(n)
    grid = [{"nprobe": p, "k_factor": kf} for kf in K_FACTORS for p in NPROBE_LADDER if p <= nlist]
    return KindSpec(kind, f"IVF{nlist},{codes},RFlat", grid, "norm_scan", train_size=min(n, max(64 * nlist, 20000)))


def fastscan_subquantizers(d: int) -> int:
    """Largest divisor of d not above d/2: 4-bit codes over 2 dimensions each (ScaNN's AH default for MIPS)."""
    cap = max(1, d // 2)
    return max(m for m in range(1, cap + 1) if d % m == 0)


def spec_for(kind: str, n: int, d: int, factory: str | None = None, train_sample: int | None = None) -> KindSpec:
    """train_sample: rows to train IVF/PQ on (default: 64 per list, at least 20,000 for PQ codebooks)."""
    spec = _spec_for(kind, n, d, factory)
    if train_sample is not None and spec.train_size:
        spec.train_size = max(1, min(n, train_sample))
    return spec


def _spec_for(kind: str, n: int, d: int, factory: str | None) -> KindSpec:
    if kind == "flat":
        return KindSpec("flat", "Flat", exact_method="faiss_flat")
    if kind == "pruned":
        return KindSpec("pruned", "Flat", exact_method="norm_scan")
    if kind == "hnsw":
        grid = [{"efSearch": ef} for ef in EF_SEARCH_GRID]
        return KindSpec("hnsw", f"HNSW{HNSW_M},Flat", grid, "norm_scan", hnsw_ef_construction=HNSW_EF_CONSTRUCTION)
    if kind == "ivf":
        nlist = nlist_for(n)
        grid = [{"nprobe": p} for p in NPROBE_LADDER if p <= nlist]
        return KindSpec("ivf", f"IVF{nlist},Flat", grid, "norm_scan", train_size=min(n, 64 * nlist), raw_copy=True)
    if kind == "ivfpq":
        # np: no polysemous training (codes re-ordered for Hamming filtering, which this search never uses):
        # it was 3/4 of the PQ training time (60k × 32: 45 s → 11 s on a busy 2-core machine)
        return _refined_ivf("ivfpq", n, f"PQ{pq_subquantizers(d)}np")
    if kind == "ivffs":
        # faiss fast-scan PQ (4-bit codes scored with SIMD lookup tables) re-ranked exactly on the raw vectors: the
        # closest faiss has to ScaNN's anisotropic-hashing + reorder. Its codes are copied into each process.
        m = fastscan_subquantizers(d)
        spec = _refined_ivf("ivffs", n, f"PQ{m}x4fs")
        spec.per_worker_bytes = n * ((m + 1) // 2 + 8)  # 4-bit codes + int64 ids per row
        return spec
    if kind == "factory":
        if not factory:
            raise ValueError("--kind factory needs --factory STRING")
        return KindSpec("factory", factory, [], "norm_scan", train_size=min(n, 100_000))
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def fits(kind: str, n: int, d: int) -> str | None:
    """Why `auto` should not try this kind for n×d, or None if it should."""
    if kind in ("ivf", "ivffs") and n < 39 * 16 * 4:
        return f"{n} items are too few to train IVF lists"
    if kind == "ivfpq" and n < 20_000:
        return f"{n} items are too few to train PQ codebooks (needs ≥ 20000)"
    if kind == "hnsw" and n < 2_000:
        return f"{n} items: an exact scan is as fast as a graph"
    return None


def estimated_bytes(kind: str, n: int, d: int) -> int:
    raw = n * d * 4
    if kind == "hnsw":
        return raw + n * HNSW_M * 2 * 4 * 2
    if kind == "ivfpq":
        return raw + n * (pq_subquantizers(d) + 8)
    if kind == "ivffs":
        return raw + n * ((fastscan_subquantizers(d) + 1) // 2 + 8)
    if kind == "ivf":
        return raw + n * 8
    return raw


# Throughput used to order `auto`'s candidates and skip those that cannot fit the tuning budget; the builder then
# extrapolates each build from its first chunks, so these only need the right order of magnitude. Measured on the
# 2-core test machine (FAISS_NOTES.md, benchmarks/results/build_report.json): k-means and IVF assignment run at
# ~4e10 multiply-adds/s; HNSW32 (efConstruction 100) insertion ~2e-8 s per (d + 64)·log2(n) per row.
FLOPS = 4e10
HNSW_SECONDS_PER_UNIT = 2e-8


def expected_build_seconds(spec: KindSpec, n: int, d: int) -> float:
    """Rough train + add time of a kind on n × d (0 for the exact kinds: they use the norm-ordered copy)."""
    if spec.exact:
        return 0.0
    if spec.kind == "hnsw" or spec.factory.startswith("HNSW"):
        return HNSW_SECONDS_PER_UNIT * n * (d + 64) * math.log2(max(n, 2)) * max(1, spec.hnsw_ef_construction) / 100
    nlist = nlist_for(n)
    seconds = (10 * spec.train_size * nlist * d + n * nlist * d) / FLOPS
    if "PQ" in spec.factory:
        seconds += 25 * spec.train_size * 256 * d / FLOPS + n * 256 * d / FLOPS
    return seconds


def create(spec: KindSpec, d: int) -> Any:
    try:
        index = faiss.index_factory(d, spec.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"factory {spec.factory!r}: faiss cannot build it ({_first_line(exc)})") from exc
    if spec.hnsw_ef_construction:
        faiss.downcast_index(index).hnsw.efConstruction = spec.hnsw_ef_construction
    return index


def needs_raw_copy(index: Any) -> bool:
    """True for IVF,Flat: its raw vectors are scattered over the lists, so exact search gets a row-ordered copy.
    (IVF,SQ/PQ without refine keep no exact vector: a copy would undo the compression the factory asked for.)"""
    base = faiss.downcast_index(index)
    return isinstance(base, faiss.IndexIVFFlat) and base.code_size == 4 * base.d


def search_grid_for_factory(index: Any) -> list[dict[str, int]]:
    """A sweep for a raw --factory index, by the family faiss built."""
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexHNSW):
        return [{"efSearch": ef} for ef in EF_SEARCH_GRID]
    if isinstance(base, faiss.IndexRefine):
        nlist = faiss.extract_index_ivf(base).nlist
        return [{"nprobe": p, "k_factor": kf} for kf in K_FACTORS for p in NPROBE_LADDER if p <= nlist]
    if isinstance(base, faiss.IndexIVF):
        return [{"nprobe": p} for p in NPROBE_LADDER if p <= base.nlist]
    if isinstance(base, faiss.IndexFlat):
        return []
    raise ValueError(
        f"factory {type(base).__name__} is not servable: use a Flat, HNSW…,Flat, IVF…,Flat/PQ/SQ or IVF…,RFlat index"
    )


def _first_line(exc: BaseException) -> str:
    """faiss's message without its C++ location: "Error in f() at file.cpp:123: what" → "what"."""
    text = " ".join(str(exc).split())
    return re.sub(r"^.*?\.(?:cpp|h):\d+: (?:Error: )?", "", text) or type(exc).__name__


def check_factory(factory: str, d: int) -> None:
    """Refuse, before any work, a factory string faiss cannot parse, whose index the reader cannot search by
    family, or that faiss cannot read back memory-mapped (an empty index is enough to tell)."""
    index = create(KindSpec("factory", factory), d)
    search_grid_for_factory(index)
    try:
        data = faiss.serialize_index(index)
        faiss.deserialize_index(data)
    except RuntimeError as exc:
        raise ValueError(f"factory {factory!r}: faiss cannot write and read it back ({_first_line(exc)})") from exc
