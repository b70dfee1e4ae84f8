"""Build orchestration: sort rows by norm into the norm-ordered raw copy, write row files, build and tune candidate
kinds within a time budget, pick one by interleaved timing, publish."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_builder import kinds, memory, publish, race, tuning
from index_builder.embeddings import Embeddings
from index_builder.flat_file import map_flat_vectors, write_sorted_flat
from index_builder.progress import Progress
from index_builder.query_sets import QuerySets, per_set_recall, split_sets
from index_format import layout
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

TUNING_QUERIES_FILE = "tuning_queries.npy"  # held-out half first, then the tuning half (verify re-measures)
CANDIDATES_DIR = "candidates"
FLAT_FILE = "flat.faiss"  # the norm-ordered raw copy: what flat and pruned publish, and what other kinds are built from
ADD_CHUNK = 65536
ADD_CHECKS = 20  # at least this many chunks per add, so the budget is checked (and the ETA updated) along the way
NORM_BLOCK = 262_144
DEFAULT_TUNE_BUDGET = 300.0  # seconds for auto's candidates (build + tune) and the final comparison
RACE_SHARE = 0.1  # of the budget kept for the interleaved comparison of the tuned candidates
BUILD_SHARE = 0.7  # a candidate is skipped when its expected build exceeds this share of its time
EXACT_CHECK_MADDS = 2e10  # multiply-adds spent checking that an exact kind is exact (1M × 128: 156 queries)
EXACT_CHECK_MIN_QUERIES = 20
TRAIN_POLL_SECONDS = 0.05
SLOWDOWN = 1.3  # HNSW insertion slows as the graph grows: extrapolated build times are scaled by this


@dataclass
class BuildOptions:
    """kind: a name from kinds.KINDS; kinds_for_auto: auto's candidates; tune_budget: seconds auto may spend on
    its candidates (build + tune + final comparison); train_sample: rows to train IVF/PQ on (None: per kind)."""

    kind: str = "auto"
    factory: str | None = None
    k: int = 10
    target_recall: float = 0.95
    keep: int | None = None
    seed: int = 0
    max_tune_queries: int = 1000
    kinds_for_auto: tuple[str, ...] = ("pruned", "flat", "hnsw", "ivf", "ivfpq")
    tune_budget: float = DEFAULT_TUNE_BUDGET
    train_sample: int | None = None
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
    stopped: str | None = None  # why tuning ended early
    timing: dict[str, Any] = field(default_factory=dict)  # the interleaved comparison's rounds

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
            "qps_single": self.timing.get("qps_median", self.chosen.qps_single if self.chosen else None),
            "stopped": self.stopped,
            **self.timing,
        }


class Abandoned(Exception):
    """A candidate that cannot finish within its share of the tuning budget."""


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Time searches as the API runs them: one OpenMP thread per searching thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class Stages:
    """Seconds spent per build stage, for the manifest."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._mark = clock()

    def done(self, name: str) -> None:
        now = self.clock()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._mark, 2)
        self._mark = now


def build(
    embeddings: Embeddings,
    out_root: Path,
    queries: F32 | None = None,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Path, layout.Manifest]:
    """Build, tune and publish a new version under out_root. On any failure nothing is published."""
    options = options or BuildOptions()
    progress = progress or Progress(quiet=True)
    if options.kind not in kinds.KINDS:
        raise ValueError(f"unknown kind {options.kind!r}; expected one of {', '.join(kinds.KINDS)}")
    unknown = [name for name in options.kinds_for_auto if name not in kinds.KINDS or name in ("auto", "factory")]
    if unknown:
        raise ValueError(f"unknown candidate kind(s) {unknown}; auto chooses among flat, pruned, hnsw, ivf, ivfpq")
    if options.kind == "factory":
        kinds.check_factory(options.factory or "", embeddings.dim)
    if not options.tune_budget > 0:
        raise ValueError(f"the tuning budget must be > 0 seconds, got {options.tune_budget}")
    for path, size in publish.remove_stale_staging(out_root):
        progress.message(f"removed stale staging directory {path} ({size / 2**20:.1f} MiB) of a build that died")
    version = publish.new_version_name()
    staging = publish.make_staging_dir(out_root, version)
    try:
        manifest = _build_into(staging, version, embeddings, queries, options, progress, clock)
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
    clock: Callable[[], float],
) -> layout.Manifest:
    started = clock()
    stages = Stages(clock)
    n, d = embeddings.vectors.shape
    k = min(options.k, n)
    (staging / CANDIDATES_DIR).mkdir()
    source_norms = row_norms(embeddings.vectors, progress)
    order = np.argsort(-source_norms, kind="stable")
    flat_path = staging / CANDIDATES_DIR / FLAT_FILE
    progress.start("write norm-ordered rows", n)
    write_sorted_flat(
        flat_path,
        embeddings.vectors,
        order,
        lambda done, total: progress.update("write norm-ordered rows", done, total),
    )
    vectors = map_flat_vectors(flat_path)
    norms: F32 = source_norms[order]
    del source_norms
    metadata = write_row_files(staging, embeddings, order, norms)
    del order
    stages.done("sort + write rows")

    split = _query_split(vectors, queries, options)
    np.save(staging / TUNING_QUERIES_FILE, np.concatenate([split.heldout, split.tune]))
    progress.message(f"exact top-{k} for {split.tune.shape[0]} tuning + {split.heldout.shape[0]} held-out queries")
    progress.start("exact top-k", n)
    both = np.concatenate([split.tune, split.heldout])
    truth, _ = tuning.exact_topk(
        vectors, both, k, norms, lambda done, total: progress.update("exact top-k", done, total)
    )
    truth_tune, truth_heldout = truth[: split.tune.shape[0]], truth[split.tune.shape[0] :]
    stages.done("exact top-k")

    auto = options.kind == "auto"
    plan = _plan(options, n, d, progress)
    tuner = _Tuner(staging, vectors, metadata, split, truth_tune, truth_heldout, k, options, progress, clock)
    deadline = clock() + options.tune_budget * (1 - RACE_SHARE) if auto else math.inf
    notes: list[str] = []
    skipped: list[dict[str, str]] = []
    candidates: list[Candidate] = []
    approximate_left = sum(spec.kind not in kinds.EXACT_KINDS for spec in plan)
    for spec in plan:
        if spec.kind in kinds.EXACT_KINDS:
            candidate = Candidate(spec, flat_path, 0.0, flat_path.stat().st_size, spec.exact_method)
            tuner.tune(candidate, None)
        else:
            allowance = (deadline - clock()) / approximate_left
            approximate_left -= 1
            expected = kinds.expected_build_seconds(spec, n, d)
            if expected > BUILD_SHARE * allowance:
                reason = f"expected ~{expected:.0f} s to build; {max(0.0, allowance):.0f} s of the tuning budget left"
                skipped.append({"kind": spec.kind, "reason": reason})
                progress.message(f"  {spec.kind}: skipped: {reason}")
                continue
            try:
                candidate = _build_candidate(staging, spec, vectors, options, progress, clock() + allowance, clock)
            except Abandoned as exc:
                skipped.append({"kind": spec.kind, "reason": str(exc)})
                progress.message(f"  {spec.kind}: abandoned: {exc}")
                stages.done(f"candidate {spec.kind}")
                continue
            tuner.tune(candidate, tuning.SweepLimits(clock() + allowance if auto else math.inf, tuner.beat(), clock))
        candidates.append(candidate)
        stages.done(f"candidate {spec.kind}")
    if not candidates:
        raise ValueError("auto: no candidate could be built within the tuning budget; raise --tune-budget")
    chosen, choice_notes, comparison = tuner.choose(candidates, deadline + options.tune_budget * RACE_SHARE)
    notes += choice_notes
    if chosen.spec.per_worker_bytes:
        choice_notes.append(
            f"{chosen.spec.kind} is not fully memory-mapped: each serving process holds a private copy of "
            f"~{chosen.spec.per_worker_bytes / 2**20:.1f} MiB (per_worker_bytes {chosen.spec.per_worker_bytes})"
        )
        notes.append(choice_notes[-1])
    for note in choice_notes:
        progress.message(note)
    notes += [f"auto: {s['kind']} skipped: {s['reason']}" for s in skipped]
    stages.done("compare + choose")

    tuner.close()
    if chosen.file != flat_path:
        os.replace(chosen.file, staging / layout.INDEX_FILE)
    else:
        os.link(flat_path, staging / layout.INDEX_FILE)
    if chosen.spec.raw_copy:
        np.save(staging / layout.RAW_VECTORS_FILE, vectors)  # the exact scan's rows (IVF lists scatter them)
    del vectors
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
            "qps": "single-query searches per second, one thread, measured while building; qps_median/qps_spread: "
            "median and ±half-range over interleaved rounds (auto)",
            "budget_seconds": options.tune_budget if auto else None,
            "candidates": [c.summary() for c in candidates],
            "skipped": skipped,
            "comparison": comparison,
            "stage_seconds": stages.seconds,
        },
        metadata=metadata,
        build_seconds=0.0,
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
    stages.done("checksums")
    manifest.tuning["peak_rss_bytes"] = memory.peak_rss_bytes()
    manifest.build_seconds = round(clock() - started, 2)
    (staging / layout.MANIFEST).write_text(manifest.to_json())
    if split.set_names:  # measured on the staged version as it will be served
        manifest.tuning["query_sets"] = per_set_recall(staging, split, truth_heldout, k)
        (staging / layout.MANIFEST).write_text(manifest.to_json())
    return manifest


def row_norms(vectors: F32, progress: Progress) -> F32:
    """L2 norm of every row, block by block (the input may be memory-mapped: its pages are released as we go)."""
    n = vectors.shape[0]
    out = np.empty(n, dtype=np.float32)
    progress.start("norms", n)
    for start in range(0, n, NORM_BLOCK):
        stop = min(start + NORM_BLOCK, n)
        out[start:stop] = np.linalg.norm(vectors[start:stop], axis=1)
        memory.release_pages(vectors, start, stop)
        progress.update("norms", stop, n)
    return out


def write_row_files(staging: Path, embeddings: Embeddings, order: I64, norms: F32) -> dict[str, list[str]]:
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
    np.save(staging / layout.NORMS_FILE, norms.astype(np.float32))
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


def _plan(options: BuildOptions, n: int, d: int, progress: Progress) -> list[kinds.KindSpec]:
    """The candidates to build, exact kinds first (their speed is the bar the others must beat), then by expected
    build cost, cheapest first: a kind that costs more gets what the cheaper ones left of the budget."""
    if options.kind != "auto":
        return [kinds.spec_for(options.kind, n, d, options.factory, options.train_sample)]
    available = _available_memory()
    specs = []
    for name in dict.fromkeys(options.kinds_for_auto):
        reason = kinds.fits(name, n, d)
        if reason is None and available and kinds.estimated_bytes(name, n, d) > available // 2:
            reason = f"needs ~{kinds.estimated_bytes(name, n, d) >> 20} MiB, half of available memory is less"
        if reason:
            progress.message(f"auto: skipping {name}: {reason}")
        else:
            specs.append(kinds.spec_for(name, n, d, None, options.train_sample))
    return sorted(specs, key=lambda spec: (not spec.exact, kinds.expected_build_seconds(spec, n, d)))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _build_candidate(
    staging: Path,
    spec: kinds.KindSpec,
    vectors: F32,
    options: BuildOptions,
    progress: Progress,
    deadline: float,
    clock: Callable[[], float],
) -> Candidate:
    """Train on a sample and add the norm-ordered rows chunk by chunk (releasing their mapped pages); abandon as
    soon as the build, extrapolated from the chunks added so far, would run past `deadline`."""
    path = staging / CANDIDATES_DIR / f"{spec.kind}.faiss"
    started = clock()
    n = vectors.shape[0]
    progress.message(f"building {spec.kind} ({spec.factory})")
    index = kinds.create(spec, vectors.shape[1])
    if not index.is_trained:
        rng = np.random.default_rng(options.seed)
        sample = np.ascontiguousarray(
            vectors[np.sort(rng.choice(n, size=min(n, spec.train_size or n), replace=False))], dtype=np.float32
        )
        progress.start(f"train {spec.kind}", 1)
        if math.isfinite(deadline):
            train_deadline = clock() + BUILD_SHARE * (deadline - clock())  # leave time to add and tune
            index = _train_before(spec, sample, train_deadline, staging / CANDIDATES_DIR, clock)
        else:
            index.train(sample)
        progress.update(f"train {spec.kind}", 1, 1)
        del sample
    progress.start(f"add {spec.kind}", n)
    add_started = clock()
    chunk = min(ADD_CHUNK, max(1024, n // ADD_CHECKS))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        index.add(vectors[start:stop])
        memory.release_pages(vectors, start, stop)
        progress.update(f"add {spec.kind}", stop, n)
        now = clock()
        projected = now + (now - add_started) / stop * (n - stop) * SLOWDOWN
        if stop < n and projected > deadline:
            raise Abandoned(
                f"adding all rows would take until +{projected - started:.0f} s, past its "
                f"{deadline - started:.0f} s share of the tuning budget ({stop}/{n} rows added)"
            )
    if spec.kind == "factory":
        spec.grid = kinds.search_grid_for_factory(index)
        spec.raw_copy = kinds.needs_raw_copy(index)
    faiss.write_index(index, str(path))
    del index
    return Candidate(spec, path, clock() - started, path.stat().st_size, spec.exact_method)


def _train_before(
    spec: kinds.KindSpec, sample: F32, deadline: float, work_dir: Path, clock: Callable[[], float]
) -> Any:
    """Train in a child process (train_worker) and return the trained, empty index read back; kill the child and
    abandon the candidate when `deadline` comes first."""
    sample_path, out_path = work_dir / f"{spec.kind}.train.npy", work_dir / f"{spec.kind}.trained.faiss"
    log_path = work_dir / f"{spec.kind}.train.log"
    np.save(sample_path, sample)
    command = [sys.executable, "-m", "index_builder.train_worker", spec.factory, str(sample.shape[1])]
    started = clock()
    with open(log_path, "w") as log, subprocess.Popen([*command, str(sample_path), str(out_path)], stderr=log) as child:
        while child.poll() is None and clock() < deadline:
            time.sleep(TRAIN_POLL_SECONDS)
        if child.poll() is None:
            child.kill()
    sample_path.unlink()
    if child.returncode != 0 and clock() >= deadline:
        raise Abandoned(
            f"training on {sample.shape[0]} rows did not finish within its share of the tuning budget "
            f"({clock() - started:.0f} s)"
        )
    if child.returncode != 0:
        last = log_path.read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"training {spec.factory} failed (exit {child.returncode}): {' '.join(last)}")
    index = faiss.read_index(str(out_path))
    out_path.unlink()
    if spec.hnsw_ef_construction:
        faiss.downcast_index(index).hnsw.efConstruction = spec.hnsw_ef_construction
    return index


class _Tuner:
    """Tunes candidates on the tuning queries, keeps their readers open, and runs the final comparison."""

    def __init__(
        self,
        staging: Path,
        vectors: F32,
        metadata: dict[str, list[str]],
        split: tuning.QuerySplit,
        truth_tune: F32,
        truth_heldout: F32,
        k: int,
        options: BuildOptions,
        progress: Progress,
        clock: Callable[[], float],
    ) -> None:
        self.staging, self.vectors, self.metadata, self.split = staging, vectors, metadata, split
        self.truth_tune, self.truth_heldout, self.k, self.options = truth_tune, truth_heldout, k, options
        self.progress, self.clock = progress, clock
        self.readers: dict[str, IndexReader] = {}
        self.exact_qps: dict[str, float] = {}  # exact kind -> single-query QPS measured while tuning
        self._indexes: dict[Path, Any] = {}

    def reader(self, candidate: Candidate) -> IndexReader:
        spec = candidate.spec
        index = self._indexes.get(candidate.file)  # flat and pruned share one file: map it once
        if index is None:
            index = faiss.read_index(str(candidate.file), faiss.IO_FLAG_MMAP_IFC)
            self._indexes[candidate.file] = index
        provisional = _provisional_manifest(spec, candidate.exact_method, self.vectors, self.metadata, self.k)
        reader = IndexReader(self.staging, provisional, index)
        if reader.vectors is None and reader.family != "ivf":
            raise ValueError(f"factory {spec.factory!r} keeps no raw vectors, so exact search could not be served")
        self.readers[spec.kind] = reader
        return reader

    def beat(self) -> float | None:
        """The speed an approximate kind must beat: the fastest exact kind measured so far."""
        return max(self.exact_qps.values()) if self.exact_qps else None

    def tune(self, candidate: Candidate, limits: tuning.SweepLimits | None) -> None:
        spec, k, split = candidate.spec, self.k, self.split
        reader = self.reader(candidate)
        with single_thread():
            if spec.exact:
                # exact by construction: a check on enough held-out queries for ~EXACT_CHECK_MADDS of work
                n, d = self.vectors.shape
                count = min(split.heldout.shape[0], max(EXACT_CHECK_MIN_QUERIES, int(EXACT_CHECK_MADDS // (n * d))))
                with tuning.blas_batches():
                    rows = reader.search(split.heldout[:count], k).rows
                recall = tuning.tie_aware_recall(
                    self.vectors, split.heldout[:count], rows, self.truth_heldout[:count], k
                )
                seconds = min(tuning.QPS_SECONDS, self.options.tune_budget / 40)
                qps = tuning.single_query_qps(reader, split.tune, k, None, True, seconds)
                candidate.chosen = layout.SweepPoint({}, 1.0, round(recall, 4), round(qps, 1))
                candidate.sweep = [candidate.chosen]
                self.exact_qps[spec.kind] = qps
            else:
                stage = f"tune {spec.kind}"
                self.progress.start(stage, len(spec.grid))
                outcome = tuning.sweep(
                    reader,
                    self.vectors,
                    split,
                    self.truth_tune,
                    self.truth_heldout,
                    spec.grid,
                    k,
                    self.options.target_recall,
                    limits,
                    lambda done, total: self.progress.update(stage, done, total),
                )
                candidate.sweep, candidate.chosen, candidate.stopped = outcome.points, outcome.chosen, outcome.stopped
        best = candidate.chosen
        if best is None:  # unmap it: only candidates reaching the target are compared at the end
            del self.readers[spec.kind]
            self._indexes.pop(candidate.file, None)
        self.progress.message(
            f"  {spec.kind}: built in {candidate.build_seconds:.1f}s, {candidate.file_bytes / 2**20:.1f} MiB, "
            + (
                f"params {best.params} recall@{k} {best.recall_heldout:.4f} (held-out), {best.qps_single:.0f} QPS"
                if best
                else f"never reached recall {self.options.target_recall} "
                f"(best {max((p.recall_tune for p in candidate.sweep), default=0.0):.4f})"
            )
            + (f"; {candidate.stopped}" if candidate.stopped else "")
        )

    def choose(
        self, candidates: list[Candidate], deadline: float
    ) -> tuple[Candidate, list[str], dict[str, Any] | None]:
        reaching = [c for c in candidates if c.reaches]
        if not reaching:
            only = candidates[0]
            best_point = max(only.sweep, key=lambda p: (p.recall_tune, p.qps_single))
            only.chosen = best_point
            note = (
                f"WARNING: {only.spec.kind} never reached recall@{self.options.k} {self.options.target_recall}; "
                f"serving its best point {best_point.params} (held-out recall {best_point.recall_heldout:.4f}). "
                "Use --kind auto (falls back to exact) or --kind pruned for exact results."
            )
            return only, [note], None
        if len(reaching) == 1:
            chosen, notes, comparison = reaching[0], list[str](), None
        else:
            chosen, notes, comparison = self._race(reaching, deadline)
        assert chosen.chosen is not None
        label = f"{chosen.spec.kind} {chosen.chosen.params}" if chosen.chosen.params else chosen.spec.kind
        others = ", ".join(
            f"{c.spec.kind} {c.summary()['qps_single']:.0f}" if c.chosen else f"{c.spec.kind} (below target)"
            for c in candidates
            if c is not chosen
        )
        notes.insert(
            0,
            f"chose {label}: fastest reaching recall@{self.options.k} ≥ {self.options.target_recall} "
            f"({chosen.summary()['qps_single']:.0f} single-query QPS" + (f"; others: {others})" if others else ")"),
        )
        self._set_exact_method(chosen)
        return chosen, notes, comparison

    def _race(self, reaching: list[Candidate], deadline: float) -> tuple[Candidate, list[str], dict[str, Any]]:
        """Interleaved rounds over every candidate reaching the target, then the winner re-checked."""
        xq = self.split.tune
        by_name = {c.spec.kind: c for c in reaching}
        entrants = [
            race.Entrant(c.spec.kind, c.spec.exact, _searcher(self.readers[c.spec.kind], c, self.k)) for c in reaching
        ]
        rounds_time = max(0.0, deadline - self.clock())
        seconds = min(race.ROUND_SECONDS, rounds_time / (2 * race.ROUNDS * len(entrants) + 2 * race.ROUNDS))
        self.progress.message(
            f"comparing {', '.join(by_name)}: {race.ROUNDS} interleaved rounds of ~{seconds:.2f} s each"
        )
        with single_thread():
            race.run_rounds(entrants, xq, race.ROUNDS, max(seconds, 0.02))
            for entrant in entrants:
                by_name[entrant.name].timing = entrant.summary()
                if entrant.exact:
                    self.exact_qps[entrant.name] = entrant.median
            decision = race.choose(entrants, xq, race.ROUNDS, max(seconds, 0.02))
        comparison = {"rounds": race.ROUNDS, "seconds_per_round": round(seconds, 3), "recheck": decision.recheck}
        return by_name[decision.winner.name], decision.notes, comparison

    def _set_exact_method(self, chosen: Candidate) -> None:
        """norm_scan wins on norm-skewed data and loses on unit-norm data: `exact: true` on an approximate kind uses
        whichever exact kind was faster here."""
        if chosen.spec.exact or chosen.exact_method != "norm_scan":
            return
        reader = self.readers[chosen.spec.kind]
        if reader.vectors is None:
            return
        exact = self.exact_qps
        if len(exact) < 2:
            timings = {}
            for method in ("norm_scan", "faiss_flat"):
                reader.manifest.exact_method = method
                with single_thread():
                    timings[method] = tuning.single_query_qps(reader, self.split.tune, self.k, None, True, 0.3, 100)
            chosen.exact_method = max(timings, key=lambda m: timings[m])
        else:
            chosen.exact_method = "norm_scan" if exact["pruned"] >= exact["flat"] else "faiss_flat"

    def close(self) -> None:
        self.readers.clear()
        self._indexes.clear()


def _searcher(reader: IndexReader, candidate: Candidate, k: int) -> Callable[[F32], Any]:
    params = candidate.chosen.params if candidate.chosen else None
    exact = candidate.spec.exact

    def search(q: F32) -> Any:
        return reader.search(q, k, params or None, exact)

    return search


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


def source_of(embeddings: Embeddings) -> dict[str, str]:
    """The input files the index was built from, by name and sha256 (a separate ids file too: it decides the ids)."""
    source = {"name": embeddings.source_name, "sha256": embeddings.source_sha256}
    if embeddings.ids_source_name:
        source.update(ids_name=embeddings.ids_source_name, ids_sha256=embeddings.ids_source_sha256)
    return source
