"""Cost of catalogue changes on POST /infer: the same index served as built, and with 1% of its products hidden
(ROOT/availability.json) plus a 1% delta segment (`index-builder add`), side by side in one run.

    flock /tmp/recsys-bench.lock python -m benchmarks.catalogue_changes --data-dir ../shared/data \
        --workers 2 --concurrency 64 --duration 6 --rounds 10

Both servers run at once (recsys-serve, the given workers each) and are measured two ways, with the same rotating
query bodies:
- alternating rounds: wrk drives one server at a time (plain then changed, changed then plain, ...). This is what a
  client of either server would see, but on this shared 2-core VM one 6 s point moves by up to ±30% between rounds
  (per-round ratios from 0.6 to 1.1 in one run), so the ratio of means wanders between runs;
- simultaneous rounds: two wrk processes drive both servers at the same moment, each at the given concurrency. All
  four workers are busy, the scheduler shares the cores between them, and each server's req/s is its share divided by
  its cost per request: the machine's drifts hit both servers at once, so the ratio measures the extra cost of the
  changes with far less noise (the absolute req/s are about half of the alternating ones).
The median of the per-round ratios is reported for both, beside the ratio of the means.
The delta's products are copies of random catalogue products with a little noise and new ids (they rank like real
products); the hidden ones are random catalogue products. Before the load, a check over HTTP: no hidden product is
ever answered, and exact answers of the changed index equal numpy brute force over its visible products.
Live recall's self-correction is off in both servers unless --recall-correct: it raises nprobe when its sampled
estimate is below the target, and on gowalla_als IVF (tuned recall ~0.955 against a 0.95 target) whether and when
each server crosses that line is a coin flip of its samples; one server at nprobe 48 and the other at 34 measures
live recall's decision, not the cost of hidden products and the delta. The effort each server ended at and its
live recall estimate are recorded either way (`effort_after`).
Writes catalogue_changes_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.http_load import (
    REPO,
    Client,
    Server,
    api_command,
    build_or_reuse,
    free_port,
    infer_body,
    load_dataset,
    run_wrk,
    server_env,
    sigterm_as_exit,
    started,
    write_bodies,
)
from index_builder.__main__ import main as builder_main
from index_builder.build import BuildOptions
from index_format import availability, layout

LOG = logging.getLogger("benchmarks.catalogue_changes")
NEW_ID_OFFSET = 1_000_000_000


def changed_copy(
    source: Path, target: Path, items: np.ndarray, ids: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """A root serving the same version (hard links) plus a delta of `delta_fraction` and `hidden_fraction` hidden."""
    version = layout.resolve_current(source)
    target.mkdir(parents=True)
    shutil.copytree(version, target / version.name, copy_function=os.link)
    os.symlink(version.name, target / layout.CURRENT_LINK)
    rng = np.random.default_rng(args.seed)
    n = len(ids)
    picked = rng.choice(n, int(args.delta_fraction * n), replace=False)
    noise = rng.standard_normal((picked.size, items.shape[1])).astype(np.float32) * 0.01
    vectors = items[picked] + noise * np.linalg.norm(items[picked], axis=1, keepdims=True) / np.sqrt(items.shape[1])
    new_ids = ids[picked] + NEW_ID_OFFSET
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "new.npy", vectors.astype(np.float32))
        np.save(Path(tmp) / "ids.npy", new_ids.astype(np.int64))
        code = builder_main(["add", str(target), str(Path(tmp) / "new.npy"), "--ids", str(Path(tmp) / "ids.npy")])
        if code != 0:
            raise RuntimeError(f"index-builder add failed with {code}")
    hidden = rng.choice(n, int(args.hidden_fraction * n), replace=False)
    availability.change(target, hide=[int(v) for v in ids[hidden]])
    return {
        "delta_items": int(picked.size),
        "hidden_items": int(hidden.size),
        "hidden_rows": hidden,
        "delta_vectors": vectors,
        "delta_ids": new_ids,
    }


def check(
    port: int, queries: np.ndarray, items: np.ndarray, ids: np.ndarray, change: dict[str, Any], k: int
) -> dict[str, Any]:
    """Over HTTP: hidden products never answered (ANN and exact); exact answers = brute force over main + delta."""
    hidden_ids = {int(v) for v in ids[change["hidden_rows"]]}
    visible = np.ones(len(ids), dtype=bool)
    visible[change["hidden_rows"]] = False
    all_vectors = np.concatenate([items[visible], change["delta_vectors"]]).astype(np.float64)
    all_ids = np.concatenate([ids[visible], change["delta_ids"]])
    client = Client(port)
    leaks = exact_mismatch = delta_in_answers = 0
    try:
        for q in queries:
            for exact in (False, True):
                status, body = client.post("/infer", infer_body("u", q, k, exact).encode())
                assert status == 200, body
                got = [hit["id"] for hit in body["recommendations"]]
                leaks += len(hidden_ids.intersection(got))
                delta_in_answers += sum(1 for i in got if i >= NEW_ID_OFFSET)
                if exact:
                    scores = all_vectors @ q.astype(np.float64)
                    kth = np.sort(scores)[-k]
                    got_scores = np.array([hit["score"] for hit in body["recommendations"]])
                    exact_mismatch += int(len(got) != k or (got_scores < kth - 1e-5 * abs(kth) - 1e-6).any())
                    in_truth = set(all_ids[scores >= kth - 1e-5 * abs(kth) - 1e-6].tolist())
                    exact_mismatch += len(set(got) - in_truth)
    finally:
        client.close()
    return {
        "queries": len(queries),
        "hidden_answered": leaks,
        "exact_mismatches": exact_mismatch,
        "delta_products_answered": delta_in_answers,
    }


def simultaneous_rounds(servers: dict[str, Server], bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds in which wrk drives both servers at the same moment (see the module docstring)."""
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    with ThreadPoolExecutor(len(servers)) as pool:
        for round_ in range(args.rounds):
            order = list(servers.items()) if round_ % 2 == 0 else list(servers.items())[::-1]
            running = {  # which wrk starts first alternates too (a run of one server against itself: ±2%)
                name: pool.submit(run_wrk, server.port, "/infer", bodies, args.concurrency, 1, args.duration, 5.0)
                for name, server in order
            }
            for name, future in running.items():
                point = future.result()
                point["round"] = round_
                points[name].append(point)
            LOG.info(
                "simultaneous round %d: plain %.0f req/s, changed %.0f req/s",
                round_,
                points["plain"][-1]["req_per_s"],
                points["changed"][-1]["req_per_s"],
            )
    return {"points": points, **ratios(points)}


def ratios(points: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean req/s of each server, the ratio of the means, and the per-round ratios with their median."""
    mean = {name: float(np.mean([pt["req_per_s"] for pt in pts])) for name, pts in points.items()}
    per_round = [c["req_per_s"] / p["req_per_s"] for p, c in zip(points["plain"], points["changed"], strict=True)]
    return {
        "mean_req_per_s": mean,
        "changed_vs_plain": round(mean["changed"] / mean["plain"], 4),
        "changed_vs_plain_per_round": [round(r, 4) for r in per_round],
        "changed_vs_plain_median_round": round(float(np.median(per_round)), 4),
    }


def live_recall_of(port: int) -> dict[str, Any]:
    """The ANN parameters a server ended at and its live recall estimate there (GET /index, one worker's view)."""
    client = Client(port)
    try:
        status, body = client.get("/index")
    finally:
        client.close()
    live = body.get("live_recall", {}) if status == 200 else {}
    return {"params": live.get("effort", {}).get("current"), "estimate": live.get("estimate")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.catalogue_changes", description=__doc__)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--dataset", default="gowalla_als")
    p.add_argument("--build-root", type=Path, help="default indexes/bench/<dataset>-<kind>")
    p.add_argument("--kind", default="ivf", help="index kind (default ivf: the kind the HTTP benchmark serves)")
    p.add_argument("--hidden-fraction", type=float, default=0.01)
    p.add_argument("--delta-fraction", type=float, default=0.01)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--check-queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recall-correct", action="store_true", help="leave live recall's self-correction on (see the docstring)"
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = load_dataset(args.dataset, args.data_dir, args.k, 10, (0, 0), seed=0)
    root = args.build_root or REPO / "indexes" / "bench" / f"{args.dataset}-{args.kind}"
    build_or_reuse(dataset, root, BuildOptions(kind=args.kind, k=args.k), rebuild=False)
    items = np.asarray(dataset.embeddings.vectors, dtype=np.float32)
    ids = np.asarray(dataset.embeddings.ids, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="catalogue-changes-") as tmp_name, sigterm_as_exit():
        tmp = Path(tmp_name)
        change = changed_copy(root, tmp / "changed", items, ids, args)
        bodies = write_bodies(tmp / "bodies.jsonl", dataset.load_queries, args.k, exact=False)
        servers = {}
        for name, served in (("plain", root), ("changed", tmp / "changed")):
            port = free_port()
            command = api_command(served, port, args.workers, "recsys-serve", [])
            env = server_env({} if args.recall_correct else {"RECSYS_RECALL_CORRECT": "0"})
            servers[name] = Server(name, command, env, tmp / f"{name}.log", port)
        with started(servers["plain"]), started(servers["changed"]):
            for server in servers.values():
                server.wait_ready(args.workers, 600)
            checked = check(
                servers["changed"].port, dataset.load_queries[: args.check_queries], items, ids, change, args.k
            )
            LOG.info("check: %s", checked)
            for server in servers.values():  # warm-up, unrecorded
                run_wrk(server.port, "/infer", bodies, args.concurrency, 1, 2.0, 5.0)
            points: dict[str, list[dict[str, Any]]] = {"plain": [], "changed": []}
            for round_ in range(args.rounds):
                order = list(servers.items()) if round_ % 2 == 0 else list(servers.items())[::-1]
                for name, server in order:  # which goes first alternates: drifts within a round cancel out
                    point = run_wrk(server.port, "/infer", bodies, args.concurrency, 1, args.duration, 5.0)
                    point["round"] = round_
                    points[name].append(point)
                    LOG.info(
                        "round %d %-8s %8.0f req/s p50 %.2f ms p99 %.2f ms non-2xx %d",
                        round_,
                        name,
                        point["req_per_s"],
                        point["p50_ms"],
                        point["p99_ms"],
                        point["non_2xx"],
                    )
            simultaneous = simultaneous_rounds(servers, bodies, args)
            effort_after = {name: live_recall_of(server.port) for name, server in servers.items()}
            LOG.info("effort after the load: %s", effort_after)
    result = {
        "benchmark": "catalogue_changes",
        "command": " ".join(sys.argv),
        "machine": common.machine_info(),
        "dataset": args.dataset,
        "index": {"root": str(root), "kind": layout.read_manifest(layout.resolve_current(root)).kind},
        "change": {
            "hidden_items": change["hidden_items"],
            "delta_items": change["delta_items"],
            "catalogue": int(len(ids)),
        },
        "workers": args.workers,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "check": checked,
        "recall_correct": args.recall_correct,
        "effort_after": effort_after,
        "points": points,
        **ratios(points),
        "simultaneous": simultaneous,
    }
    out = args.out / f"catalogue_changes_{args.dataset}.json"
    common.write_json(out, result)
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("change", "check", "mean_req_per_s", "changed_vs_plain", "changed_vs_plain_median_round")
            }
            | {"simultaneous": {k: v for k, v in simultaneous.items() if k != "points"}},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
