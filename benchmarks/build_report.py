"""Build report: `index-builder build --kind auto` on real and synthetic sets; per candidate kind: build time,
bytes on disk, chosen parameters, held-out recall@10, single-query QPS, plus the whole build's wall time.

    python -m benchmarks.build_report --data-dir ../shared/data --glove-items /tmp/glove/items.npy \\
        --synthetic 1000000x128 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.synthetic import SyntheticSpec, generate_items, generate_queries, norm_spread
from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_builder.progress import Progress


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model,
        "cores": faiss.omp_get_max_threads(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
    }


def _datasets(args: argparse.Namespace) -> list[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]:
    out = []
    data = Path(args.data_dir)
    if (data / "gowalla_als" / "items.npy").exists():
        out.append(
            ("gowalla_als", np.load(data / "gowalla_als/items.npy"), np.load(data / "gowalla_als/queries.npy"), {})
        )
    if (data / "instacart_products" / "items.npy").exists():
        folder = data / "instacart_products"
        out.append(("instacart_products", np.load(folder / "items.npy"), np.load(folder / "queries_heldout.npy"), {}))
    if args.glove_items and Path(args.glove_items).exists():
        queries = np.load(data / "glove6b50" / "queries.npy")
        out.append(("glove6b50", np.load(args.glove_items), queries, {}))
    for shape in args.synthetic or []:
        n, d = (int(x) for x in shape.lower().split("x"))
        spec = SyntheticSpec(n=n, d=d, n_queries=2000, seed=1)
        items = generate_items(spec)
        out.append((f"synthetic_{n}x{d}", items, generate_queries(spec), {"norms": norm_spread(items)}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--glove-items", help="items.npy regenerated per ../shared/data/glove6b50/README.md")
    parser.add_argument("--synthetic", action="append", help="NxD, e.g. 1000000x128 (repeatable)")
    parser.add_argument("--only", help="comma-separated dataset names to run")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "build_report.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {"datasets": {}}
    report.update({"machine": _machine(), "command": "auto, target recall@10 0.95"})
    for name, items, queries, extra in _datasets(args):
        if args.only and name not in args.only.split(","):
            continue
        print(f"== {name}: {items.shape[0]} × {items.shape[1]}", flush=True)
        embeddings = Embeddings(np.arange(items.shape[0], dtype=np.int64), np.ascontiguousarray(items, np.float32))
        with tempfile.TemporaryDirectory(dir=out) as root:
            started = time.perf_counter()
            _, manifest = build(embeddings, Path(root), queries, BuildOptions(kind="auto"), Progress())
            wall = time.perf_counter() - started
        report["datasets"][name] = {
            "n": int(items.shape[0]),
            "d": int(items.shape[1]),
            "wall_seconds": round(wall, 1),
            "chosen": manifest.kind,
            "params": manifest.default_params,
            "recall_heldout": manifest.recall_at_k,
            "candidates": manifest.tuning["candidates"],
            **extra,
        }
        print(markdown(name, report["datasets"][name]), flush=True)
        (out / "build_report.json").write_text(json.dumps(report, indent=2))


def markdown(name: str, entry: dict[str, Any]) -> str:
    lines = [
        f"**{name}** ({entry['n']:,} × {entry['d']}): auto chose `{entry['chosen']}` {entry['params'] or ''}, "
        f"whole build {entry['wall_seconds']} s",
        "",
        "| kind | build s | MiB on disk | params | recall@10 held-out | single-query QPS |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for c in entry["candidates"]:
        recall = f"{c['recall_heldout']:.4f}" if c["recall_heldout"] is not None else "below target"
        qps = f"{c['qps_single']:,.0f}" if c["qps_single"] is not None else "–"
        params = "(exact)" if c["params"] == {} else (c["params"] or "–")
        lines.append(f"| {c['kind']} | {c['build_seconds']} | {c['bytes'] / 2**20:.1f} | {params} | {recall} | {qps} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
