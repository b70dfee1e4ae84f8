"""How cost grows with the catalogue: build time, bytes, single-query QPS at recall@10 ≥ 0.95 and search p50,
for synthetic ALS-like catalogues of N items × d dimensions; exact flat against what `auto` picks.

    python -m benchmarks.scale --sizes 100000,300000,1000000,3000000 --dims 64,128 --out benchmarks/results

Resumable: points already in the JSON are skipped (delete the file, or pass --fresh, to start over). Each
(N, d) is written as soon as it is measured.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks import common, plots, synthetic
from benchmarks.common import F32, I64, K
from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_builder.tuning import exact_topk
from index_format.reader import IndexReader

METHODS = ("flat", "auto")
TUNE_QUERIES = 1000  # handed to the builder (split into tuning and held-out halves); disjoint from evaluation


def measure_point(
    n: int, d: int, method: str, items: F32, xq: F32, truth: F32, tune: F32, args: argparse.Namespace
) -> dict[str, Any]:
    """Build `method` over the items and measure it through IndexReader, as the API would search it."""
    root = Path(tempfile.mkdtemp(prefix=f"scale-{n}x{d}-{method}-", dir=args.work_dir))
    try:
        options = BuildOptions(
            kind=method, k=K, seed=args.seed, max_tune_queries=args.builder_tune_queries, kinds_for_auto=args.auto_kinds
        )
        faiss.omp_set_num_threads(args.build_threads)
        started = time.perf_counter()
        version_dir, manifest = build(Embeddings(ids=np.arange(n, dtype=np.int64), vectors=items), root, tune, options)
        builder_seconds = time.perf_counter() - started
        chosen = next(c for c in manifest.tuning["candidates"] if c["kind"] == manifest.kind)
        reader = IndexReader.open(version_dir)
        reader.warm()
        ids = np.asarray(reader.ids)

        def search(q: F32, params: dict[str, int]) -> I64:
            rows = reader.search(q, K, params or None).rows
            return np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)

        # the builder's grid for the chosen kind, re-measured on the evaluation queries
        grid = [dict(p.params) for p in manifest.sweep] if manifest.sweep and manifest.sweep[0].params else [{}]
        points: list[dict[str, Any]] = []
        common.set_search_threads(args.build_threads)  # recall: all queries at once, all cores
        for params in grid:
            recall = common.recall_at_k(items, xq, search(xq, params), truth)
            points.append({"params": params, "recall": round(recall, 4), "qps_single": None})  # None: not timed
        # time only the cheapest points that reach the target, and the builder's default
        common.set_search_threads(1)  # timing: one thread, as the API searches
        reaching = sorted((p for p in points if p["recall"] >= args.target), key=lambda p: _cost(p["params"]))[:3]
        default = next((p for p in points if p["params"] == manifest.default_params), points[0])
        for point in {id(p): p for p in [*reaching, default]}.values():
            timed = functools.partial(search, params=point["params"])
            point.update(common.time_single(timed, xq, budget_s=args.budget))
        best = common.best_at_recall([p for p in points if "p50_ms" in p], args.target)
        at = best or default
        return {
            "n": n,
            "d": d,
            "method": method,
            "picked": manifest.kind,
            "auto_kinds": list(args.auto_kinds) if method == "auto" else None,
            "factory": manifest.factory,
            "build_seconds": chosen["build_seconds"],  # train + add + write of the chosen index
            "builder_seconds": round(builder_seconds, 2),  # all of `index-builder build`, incl. other candidates
            "index_bytes": manifest.files["index.faiss"]["bytes"],
            "dir_bytes": common.dir_bytes(version_dir),
            "reaches_target": best is not None,
            "params": at["params"],
            "recall": at["recall"],
            "qps_single": at["qps_single"],
            "p50_ms": at["p50_ms"],
            "p99_ms": at["p99_ms"],
            "default_params": manifest.default_params,
            "default_recall": default["recall"],
            "candidates": manifest.tuning["candidates"],
            "builder_notes": manifest.notes,
            "sweep": points,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cost(params: dict[str, int]) -> tuple[int, ...]:
    return tuple(params.values())


def slopes(points: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Log–log slope of each metric against N per (method, d): ≈1 linear, <1 sub-linear."""
    out: dict[str, dict[str, float | None]] = {}
    for method in METHODS:
        for d in sorted({p["d"] for p in points}):
            series = sorted((p for p in points if p["method"] == method and p["d"] == d), key=lambda p: p["n"])
            if len(series) < 2:
                continue
            out[f"{method} d={d}"] = {
                field: _round(plots.loglog_slope([p["n"] for p in series], [p[field] for p in series]))
                for field in ("build_seconds", "builder_seconds", "index_bytes", "qps_single", "p50_ms")
            }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    json_path = out / args.name
    result: dict[str, Any] = {"benchmark": "scale", "points": [], "runs": []}
    if json_path.exists() and not args.fresh:
        import json

        result = json.loads(json_path.read_text())
    done = {(p["n"], p["d"], p["method"]) for p in result["points"]}
    machine = common.machine_info()
    result["machine"] = machine
    result["runs"].append({"started": machine["date"], "commit": machine["commit"], "argv": sys.argv[1:]})
    result["settings"] = {
        "k": K,
        "target_recall": args.target,
        "evaluation_queries": args.queries,
        "builder_tune_queries": TUNE_QUERIES,
        "auto_kinds": list(args.auto_kinds),
        "search_threads": 1,
        "build_threads": args.build_threads,
        "qps": "single-query, one thread, through IndexReader (the API's search path), warm mmap",
        "p50_ms": "in-process search latency at the reported point (not over HTTP)",
        "build_seconds": "train + add + write of the chosen index; builder_seconds adds tuning and other candidates",
    }
    result["generator"] = {
        "spec_defaults": asdict(synthetic.SyntheticSpec(n=0, d=0)),
        "norm_spread": result.get("generator", {}).get("norm_spread", {}),
    }
    for n in args.sizes:
        for d in args.dims:
            todo = [m for m in METHODS if (n, d, m) not in done]
            if not todo:
                print(f"{n}×{d}: already measured, skipped", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            spec = synthetic.SyntheticSpec(n=n, d=d, n_queries=args.queries, seed=args.seed)
            items = synthetic.generate_items(spec)
            xq = synthetic.generate_queries(spec)
            tune = synthetic.generate_queries(spec, count=TUNE_QUERIES, stream=1)
            faiss.omp_set_num_threads(args.build_threads)
            truth, _ = exact_topk(items, xq, K)
            spread = synthetic.norm_spread(items)
            result["generator"]["norm_spread"][f"{n}x{d}"] = spread
            print(
                f"{n}×{d}: data + ground truth in {time.perf_counter() - t0:.0f}s "
                f"(norm p99/median {spread['p99_over_median']:.2f}, max/min {spread['max_over_min']:.0f})",
                file=sys.stderr,
            )
            for method in todo:
                t1 = time.perf_counter()
                point = measure_point(n, d, method, items, xq, truth, tune, args)
                point["wall_seconds"] = round(time.perf_counter() - t1, 1)
                point["measured_at"] = common.machine_info()["date"]
                result["points"].append(point)
                result["slopes"] = slopes(result["points"])
                common.write_json(json_path, result)
                print(
                    f"  {method}: {point['picked']} {point['params']} recall {point['recall']:.3f}, "
                    f"{point['qps_single']:.0f} QPS, p50 {point['p50_ms']:.2f} ms, build {point['build_seconds']:.1f}s "
                    f"(builder {point['builder_seconds']:.0f}s), {point['index_bytes'] / 2**20:.0f} MiB "
                    f"[{point['wall_seconds']:.0f}s]",
                    file=sys.stderr,
                )
                gc.collect()
            del items, xq, tune, truth
            gc.collect()
    result["slopes"] = slopes(result["points"])
    common.write_json(json_path, result)
    plots.plot_scale(result, out / json_path.with_suffix(".png").name)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000,3000000")
    parser.add_argument("--dims", default="64,128")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="scale.json", help="JSON file name under --out (the PNG takes its stem)")
    parser.add_argument("--queries", type=int, default=1000, help="evaluation queries per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--auto-kinds", default="pruned,flat,hnsw,ivf,ivfpq", help="BuildOptions.kinds_for_auto")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of single-query timing per timed point")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--builder-tune-queries", type=int, default=500)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--fresh", action="store_true", help="ignore points already in the JSON")
    args = parser.parse_args(argv)
    args.sizes = [int(v) for v in args.sizes.split(",") if v]
    args.dims = [int(v) for v in args.dims.split(",") if v]
    args.auto_kinds = tuple(v for v in args.auto_kinds.split(",") if v)
    return args


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
