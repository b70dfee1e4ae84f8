"""Build orchestration: sort rows by norm, write row files, build and tune candidate kinds, pick one, publish."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_builder import kinds, publish, tuning
from index_builder.embeddings import Embeddings
from index_builder.progress import Progress
from index_builder.query_sets import QuerySets, per_set_recall, split_sets
from index_format import layout
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

TUNING_QUERIES_FILE = "tuning_queries.npy"  # held-out half first, then the tuning half (verify re-measures)
CANDIDATES_DIR = "candidates"
ADD_CHUNK = 65536


@dataclass
class BuildOptions:
    kind: str = "auto"
    factory: str | None = None
    k: int = 10
    target_recall: float = 0.95
    keep: int | None = None
    seed: int = 0
    max_tune_queries: int = 1000
    kinds_for_auto: tuple[str, ...] = ("pruned", "flat", "hnsw", "ivf", "ivfpq")
    query_sets: QuerySets = ()  # several --queries files: (name, count) of each, in the concatenated queries' order


@dataclass
class Candidate:
    spec: kinds.KindSpec
    file: Path
    build_seconds: float
    file_bytes: int
    exact_method: str
    sweep: list[layout.SweepPoint] = field(default_factory=list)
    chosen: layout.SweepPoint | None = None

    @property
    def reaches(self) -> bool:
        return self.chosen is not None

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.spec.kind,
            "factory": self.spec.factory,
            "build_seconds": round(self.build_seconds, 2),
            "bytes": self.file_bytes,
            "params": self.chosen.params if self.chosen else None,
            "recall_heldout": self.chosen.recall_heldout if self.chosen else None,
            "qps_single": self.chosen.qps_single if self.chosen else None,
        }


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Time searches as the API runs them: one OpenMP thread per searching thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build(
    embeddings: Embeddings,
    out_root: Path,
    queries: F32 | None = None,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> tuple[Path, layout.Manifest]:
    """Build, tune and publish a new version under out_root. On any failure nothing is published."""
    options = options or BuildOptions()
    progress = progress or Progress(quiet=True)
    if options.kind not in kinds.KINDS:
        raise ValueError(f"unknown kind {options.kind!r}; expected one of {', '.join(kinds.KINDS)}")
    version = publish.new_version_name()
    staging = publish.make_staging_dir(out_root, version)
    try:
        manifest = _build_into(staging, version, embeddings, queries, options, progress)
        final = publish.publish(out_root, staging, version, options.keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress.message(f"published {final} (current → {version})")
    return final, manifest


def _build_into(
    staging: Path,
    version: str,
    embeddings: Embeddings,
    queries: F32 | None,
    options: BuildOptions,
    progress: Progress,
) -> layout.Manifest:
    started = time.perf_counter()
    n, d = embeddings.vectors.shape
    k = min(options.k, n)
    order = np.argsort(-np.linalg.norm(embeddings.vectors, axis=1), kind="stable")
    vectors: F32 = np.ascontiguousarray(embeddings.vectors[order])
    metadata = write_row_files(staging, embeddings, order, vectors)

    split = _query_split(vectors, queries, options)
    np.save(staging / TUNING_QUERIES_FILE, np.concatenate([split.heldout, split.tune]))
    progress.message(f"exact top-{k} for {split.tune.shape[0]} tuning + {split.heldout.shape[0]} held-out queries")
    truth_tune, _ = tuning.exact_topk(vectors, split.tune, k)
    truth_heldout, _ = tuning.exact_topk(vectors, split.heldout, k)

    (staging / CANDIDATES_DIR).mkdir()
    kind_names = _candidate_kinds(options, n, d, progress)
    candidates = []
    for name in kind_names:
        spec = kinds.spec_for(name, n, d, options.factory)
        candidate = _build_candidate(staging, spec, vectors, options.seed, progress)
        _tune_candidate(staging, candidate, metadata, vectors, split, truth_tune, truth_heldout, k, options, progress)
        candidates.append(candidate)
    chosen, notes = _choose(candidates, options)
    for note in notes:
        progress.message(note)

    os.replace(chosen.file, staging / layout.INDEX_FILE)
    shutil.rmtree(staging / CANDIDATES_DIR)
    assert chosen.chosen is not None
    manifest = layout.Manifest(
        format_version=layout.FORMAT_VERSION,
        version=version,
        kind=chosen.spec.kind,
        factory=chosen.spec.factory,
        dim=d,
        count=n,
        metric=layout.METRIC,
        id_type=embeddings.id_type,
        default_params=chosen.chosen.params,
        exact_method=chosen.exact_method,
        k=k,
        target_recall=options.target_recall,
        recall_at_k=chosen.chosen.recall_heldout,
        sweep=chosen.sweep,
        tuning={
            "queries_source": split.source,
            "n_tune": int(split.tune.shape[0]),
            "n_heldout": int(split.heldout.shape[0]),
            "queries_file": TUNING_QUERIES_FILE,
            "recall": "tie-aware recall@k on the held-out queries; params chosen on the tuning queries",
            "qps": "single-query searches per second, one thread, measured while building",
            "candidates": [c.summary() for c in candidates],
        },
        metadata=metadata,
        build_seconds=round(time.perf_counter() - started, 2),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        faiss_version=faiss.__version__,
        source=source_of(embeddings),
        notes=notes,
    )
    manifest.files = {
        path.name: {"sha256": layout.sha256_of(path), "bytes": path.stat().st_size}
        for path in sorted(staging.iterdir())
        if path.is_file()
    }
    (staging / layout.MANIFEST).write_text(manifest.to_json())
    if split.set_names:  # measured on the staged version as it will be served
        manifest.tuning["query_sets"] = per_set_recall(staging, split, truth_heldout, k)
        (staging / layout.MANIFEST).write_text(manifest.to_json())
    return manifest


def write_row_files(staging: Path, embeddings: Embeddings, order: I64, vectors: F32) -> dict[str, list[str]]:
    """ids, id lookup table, norms and categorical metadata, all in the norm-sorted row order."""
    if isinstance(embeddings.ids, list):
        encoded = [embeddings.ids[i].encode("utf-8") for i in order.tolist()]
        width = max(1, max((len(b) for b in encoded), default=1))
        ids: np.ndarray[Any, Any] = np.array(encoded, dtype=f"S{width}")
    else:
        ids = np.asarray(embeddings.ids, dtype=np.int64)[order]
    sorted_rows = np.argsort(ids, kind="stable").astype(np.int64)
    np.save(staging / layout.IDS_FILE, ids)
    np.save(staging / layout.IDS_SORTED_FILE, ids[sorted_rows])
    np.save(staging / layout.IDS_SORTED_ROWS_FILE, sorted_rows)
    np.save(staging / layout.NORMS_FILE, np.linalg.norm(vectors, axis=1).astype(np.float32))
    names_by_field: dict[str, list[str]] = {}
    for field_name, values in sorted(embeddings.metadata.items()):
        names = sorted({value for value in values if value is not None})
        code_of = {name: code for code, name in enumerate(names)}
        codes = np.array([code_of.get(values[i], -1) if values[i] is not None else -1 for i in order.tolist()])
        np.save(staging / layout.metadata_codes_file(field_name), codes.astype(np.int32))
        names_by_field[field_name] = names
    return names_by_field


def _query_split(vectors: F32, queries: F32 | None, options: BuildOptions) -> tuning.QuerySplit:
    if queries is not None and len(options.query_sets) > 1:
        return split_sets(queries, options.query_sets, options.seed, options.max_tune_queries)
    if queries is not None and queries.shape[0] >= 2:
        tune, heldout = tuning.split_queries(queries, options.seed, options.max_tune_queries)
        return tuning.QuerySplit(tune, heldout, "file")
    sampled = tuning.sampled_item_queries(vectors, 2 * options.max_tune_queries, options.seed)
    tune, heldout = tuning.split_queries(sampled, options.seed, options.max_tune_queries)
    return tuning.QuerySplit(tune, heldout, "sampled-items")


def _candidate_kinds(options: BuildOptions, n: int, d: int, progress: Progress) -> list[str]:
    if options.kind != "auto":
        return [options.kind]
    available = _available_memory()
    chosen = []
    for name in options.kinds_for_auto:
        reason = kinds.fits(name, n, d)
        if reason is None and available and kinds.estimated_bytes(name, n, d) > available // 2:
            reason = f"needs ~{kinds.estimated_bytes(name, n, d) >> 20} MiB, half of available memory is less"
        if reason:
            progress.message(f"auto: skipping {name}: {reason}")
        else:
            chosen.append(name)
    return chosen


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _build_candidate(staging: Path, spec: kinds.KindSpec, vectors: F32, seed: int, progress: Progress) -> Candidate:
    path = staging / CANDIDATES_DIR / f"{spec.kind}.faiss"
    started = time.perf_counter()
    twin = staging / CANDIDATES_DIR / ("flat.faiss" if spec.kind == "pruned" else "pruned.faiss")
    if spec.kind in kinds.EXACT_KINDS and twin.exists():
        os.link(twin, path)  # flat and pruned share one file; only the search differs
    else:
        progress.message(f"building {spec.kind} ({spec.factory})")
        index = kinds.create(spec, vectors.shape[1])
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            sample = vectors[np.sort(rng.choice(vectors.shape[0], size=spec.train_size, replace=False))]
            progress.update(f"train {spec.kind}", 0, 1)
            index.train(np.ascontiguousarray(sample))
            progress.update(f"train {spec.kind}", 1, 1)
        for start in range(0, vectors.shape[0], ADD_CHUNK):
            index.add(vectors[start : start + ADD_CHUNK])
            progress.update(f"add {spec.kind}", min(start + ADD_CHUNK, vectors.shape[0]), vectors.shape[0])
        if spec.kind == "factory":
            spec.grid = kinds.search_grid_for_factory(index)
        faiss.write_index(index, str(path))
        del index
    return Candidate(spec, path, time.perf_counter() - started, path.stat().st_size, spec.exact_method)


def _tune_candidate(
    staging: Path,
    candidate: Candidate,
    metadata: dict[str, list[str]],
    vectors: F32,
    split: tuning.QuerySplit,
    truth_tune: F32,
    truth_heldout: F32,
    k: int,
    options: BuildOptions,
    progress: Progress,
) -> None:
    spec = candidate.spec
    index = faiss.read_index(str(candidate.file), faiss.IO_FLAG_MMAP_IFC)
    provisional = _provisional_manifest(spec, candidate.exact_method, vectors, metadata, k)
    reader = IndexReader(staging, provisional, index)
    if reader.vectors is None and reader.family != "ivf":
        raise ValueError(f"factory {spec.factory!r} keeps no raw vectors, so exact search could not be served")
    with single_thread():
        if spec.exact:
            rows = reader.search(split.heldout, k).rows
            recall = tuning.tie_aware_recall(vectors, split.heldout, rows, truth_heldout, k)
            qps = tuning.single_query_qps(reader, split.tune, k, None, exact=True)
            candidate.chosen = layout.SweepPoint({}, 1.0, round(recall, 4), round(qps, 1))
            candidate.sweep = [candidate.chosen]
        else:
            if candidate.exact_method == "norm_scan" and reader.vectors is not None:
                candidate.exact_method = _faster_exact_method(reader, split.tune, k)
                reader.manifest.exact_method = candidate.exact_method
            total = len(spec.grid)
            progress.update(f"tune {spec.kind}", 0, total)
            outcome = tuning.sweep(
                reader, vectors, split, truth_tune, truth_heldout, spec.grid, k, options.target_recall
            )
            progress.update(f"tune {spec.kind}", total, total)
            candidate.sweep = outcome.points
            candidate.chosen = outcome.chosen
    best = candidate.chosen
    progress.message(
        f"  {spec.kind}: built in {candidate.build_seconds:.1f}s, {candidate.file_bytes / 2**20:.1f} MiB, "
        + (
            f"params {best.params} recall@{k} {best.recall_heldout:.4f} (held-out), {best.qps_single:.0f} QPS"
            if best
            else f"never reached recall {options.target_recall} "
            f"(best {max(p.recall_tune for p in candidate.sweep):.4f})"
        )
    )


def _faster_exact_method(reader: IndexReader, xq: F32, k: int) -> str:
    """norm_scan wins on norm-skewed data and loses on unit-norm data: time both on a few queries."""
    timings = {}
    for method in ("norm_scan", "faiss_flat"):
        reader.manifest.exact_method = method
        timings[method] = tuning.single_query_qps(reader, xq[:100], k, None, exact=True)
    return max(timings, key=lambda m: timings[m])


def _provisional_manifest(
    spec: kinds.KindSpec, exact_method: str, vectors: F32, metadata: dict[str, list[str]], k: int
) -> layout.Manifest:
    return layout.Manifest(
        format_version=layout.FORMAT_VERSION,
        version="staging",
        kind=spec.kind,
        factory=spec.factory,
        dim=int(vectors.shape[1]),
        count=int(vectors.shape[0]),
        metric=layout.METRIC,
        id_type="int",
        default_params=dict(spec.grid[0]) if spec.grid else {},
        exact_method=exact_method,
        k=k,
        target_recall=0.0,
        recall_at_k=0.0,
        sweep=[],
        tuning={},
        metadata=metadata,
        build_seconds=0.0,
        built_at="",
        faiss_version=faiss.__version__,
        source={},
    )


def _choose(candidates: list[Candidate], options: BuildOptions) -> tuple[Candidate, list[str]]:
    """The fastest candidate (single-query QPS) whose tuning recall reaches the target."""
    reaching = [c for c in candidates if c.reaches]
    if reaching:
        best = max(reaching, key=lambda c: c.chosen.qps_single if c.chosen else 0.0)
        others = ", ".join(
            f"{c.spec.kind} {c.chosen.qps_single:.0f}" if c.chosen else f"{c.spec.kind} (below target)"
            for c in candidates
            if c is not best
        )
        assert best.chosen is not None
        approximate_missed = [c.spec.kind for c in candidates if not c.spec.exact and not c.reaches]
        if best.spec.exact and approximate_missed and not any(c.reaches and not c.spec.exact for c in candidates):
            others = f"no approximate kind reached the target ({', '.join(approximate_missed)}): falling back to exact"
        label = f"{best.spec.kind} {best.chosen.params}" if best.chosen.params else best.spec.kind
        reason = (
            f"chose {label}: fastest reaching recall@{options.k} ≥ "
            f"{options.target_recall} ({best.chosen.qps_single:.0f} single-query QPS"
            + (f"; others: {others})" if others else ")")
        )
        return best, [reason]
    only = candidates[0]
    best_point = max(only.sweep, key=lambda p: (p.recall_tune, p.qps_single))
    only.chosen = best_point
    note = (
        f"WARNING: {only.spec.kind} never reached recall@{options.k} {options.target_recall}; "
        f"serving its best point {best_point.params} (held-out recall {best_point.recall_heldout:.4f}). "
        "Use --kind auto (falls back to exact) or --kind pruned for exact results."
    )
    return only, [note]


def source_of(embeddings: Embeddings) -> dict[str, str]:
    """The input files the index was built from, by name and sha256 (a separate ids file too: it decides the ids)."""
    source = {"name": embeddings.source_name, "sha256": embeddings.source_sha256}
    if embeddings.ids_source_name:
        source.update(ids_name=embeddings.ids_source_name, ids_sha256=embeddings.ids_source_sha256)
    return source
