"""The default build command at catalogue scale: `index-builder build ITEMS.npy --queries Q.npy --out ROOT` with no
other flags, on benchmarks.synthetic's seeded ALS-like catalogue. Records wall time, peak RSS of the builder process
(from wait4, so mapped file pages it touched count too), per-stage times read from its timestamped stderr, what it
published, and the recall@10 of what it published on a separate stream of users (never seen by the builder).

    python -m benchmarks.build_scale --n 1000000 --d 128 --work-dir /tmp/scale --out benchmarks/results
    python -m benchmarks.build_scale --n 1000000 --d 128 --code-dir /tmp/before --tag before   # older code

Data files are generated once into --work-dir (items_<n>x<d>.npy, queries_<n>x<d>.npy) and reused.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from benchmarks import common, synthetic
from index_builder.tuning import exact_topk
from index_format import layout
from index_format.reader import IndexReader

EVAL_QUERIES = 1000
CANDIDATE_DONE = re.compile(r"^  (\w+): (built|skipped|abandoned)")


def data_files(n: int, d: int, work_dir: Path, seed: int) -> tuple[Path, Path]:
    """Items (written chunk by chunk into a mapped .npy: no second copy in RAM) and the builder's queries."""
    items_path = work_dir / f"items_{n}x{d}.npy"
    queries_path = work_dir / f"queries_{n}x{d}.npy"
    spec = synthetic.SyntheticSpec(n=n, d=d, n_queries=1000, seed=seed)
    if not items_path.exists():
        partial = items_path.with_suffix(".partial.npy")
        out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, d))
        synthetic.generate_items(spec, out=out)
        out.flush()
        del out
        os.replace(partial, items_path)
    if not queries_path.exists():
        np.save(queries_path, synthetic.generate_queries(spec))
    return items_path, queries_path


def run_builder(items: Path, queries: Path, root: Path, code_dir: Path | None, nice: int) -> dict[str, Any]:
    """Run the CLI as a child process; every stderr line gets its time since start."""
    env = dict(os.environ)
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    command = [
        sys.executable,
        "-m",
        "index_builder",
        "build",
        str(items),
        "--queries",
        str(queries),
        "--out",
        str(root),
    ]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    started = time.perf_counter()
    cwd = code_dir  # `python -m` puts the working directory first on sys.path
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    assert process.stderr is not None and process.stdout is not None
    log: list[tuple[float, str]] = []
    for line in process.stderr:
        log.append((round(time.perf_counter() - started, 2), line.rstrip("\n")))
        print(f"{log[-1][0]:8.1f} {log[-1][1]}", file=sys.stderr, flush=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"builder failed (status {status}): {log[-3:]}")
    return {
        "command": " ".join(command[command.index("-m") - 1 :]),
        "wall_seconds": round(wall, 1),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "stages": stages_from_log(log, wall),
        "stdout": stdout,
        "log": log,
    }


def stages_from_log(log: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds per stage: loading (to the "loaded" line), preparing (sort, row files, exact top-k: up to the first
    candidate line), each candidate (to its "  kind: ..." line), then choosing + publishing (to the end)."""
    stages: dict[str, float] = {}
    last = 0.0
    for t, line in log:
        if line.startswith("loaded "):
            stages["load"], last = t, t
        elif line.startswith(("building ", "  ")) and "prepare" not in stages and "load" in stages:
            stages["prepare"], last = round(t - last, 1), t
        match = CANDIDATE_DONE.match(line)
        if match:
            stages[f"candidate {match.group(1)}"] = round(t - last, 1)
            last = t
    stages["choose + publish"] = round(wall - last, 1)
    return stages


def evaluate(root: Path, items: Path, n: int, d: int, seed: int) -> dict[str, Any]:
    """recall@10 of the published default params on EVAL_QUERIES users from a stream the builder never saw."""
    spec = synthetic.SyntheticSpec(n=n, d=d, seed=seed)
    xq = synthetic.generate_queries(spec, count=EVAL_QUERIES, stream=7)
    vectors = np.load(items, mmap_mode="r")
    true_scores, _ = exact_topk(vectors, xq, common.K)
    reader = IndexReader.open(layout.resolve_current(root), verify=False)
    rows = reader.search(xq, common.K).rows
    ids = np.asarray(reader.ids)
    found = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
    recall = common.recall_at_k(vectors, xq, found, true_scores)
    return {"recall_at_10_fresh_users": round(recall, 4), "eval_queries": EVAL_QUERIES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.build_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/build_scale"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--code-dir", type=Path, help="run the builder from this source tree (e.g. an older commit)")
    parser.add_argument("--tag", default="after", help="key of this run in the JSON (e.g. before / after)")
    parser.add_argument("--nice", type=int, default=0, help="run the builder under nice -n N")
    parser.add_argument("--data-only", action="store_true", help="only generate the data files")
    parser.add_argument("--no-eval", action="store_true", help="skip the fresh-user recall check (large N)")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    items, queries = data_files(args.n, args.d, args.work_dir, args.seed)
    if args.data_only:
        return
    root = args.work_dir / f"root_{args.n}x{args.d}_{args.tag}"
    shutil.rmtree(root, ignore_errors=True)
    machine = common.machine_info()
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    run = run_builder(items, queries, root, args.code_dir, args.nice)
    manifest = layout.read_manifest(layout.resolve_current(root))
    entry = {
        "machine": machine,
        "load_average_at_start": load_before,
        "code": str(args.code_dir or "this checkout"),
        "input_bytes": items.stat().st_size,
        **{key: value for key, value in run.items() if key != "log"},
        "peak_rss_over_input": round(run["peak_rss_bytes"] / items.stat().st_size, 2),
        "published": {
            "kind": manifest.kind,
            "params": manifest.default_params,
            "recall_heldout": manifest.recall_at_k,
            "candidates": manifest.tuning.get("candidates"),
            "notes": manifest.notes,
            "manifest_peak_rss_bytes": manifest.tuning.get("peak_rss_bytes"),
            "stage_seconds": manifest.tuning.get("stage_seconds"),
        },
        "log": run["log"],
    }
    if not args.no_eval:
        entry.update(evaluate(root, items, args.n, args.d, args.seed))
    path = args.out / f"build_scale_{args.n}x{args.d}.json"
    result = common_load(path)
    result["runs"][args.tag] = entry
    common.write_json(path, result)
    shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.tag}: {run['wall_seconds']} s wall, peak RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB "
        f"({entry['peak_rss_over_input']}× input), published {manifest.kind} {manifest.default_params} "
        f"recall {manifest.recall_at_k}; stages {run['stages']}",
        file=sys.stderr,
    )


def common_load(path: Path) -> dict[str, Any]:
    import json

    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    return {"benchmark": "build_scale", "runs": {}}


if __name__ == "__main__":
    main()
