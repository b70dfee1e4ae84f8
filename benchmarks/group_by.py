"""Per-category top-n (group_by) on instacart_products: latency against plain /infer, and recall per group against
exact per-category search.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 flock /tmp/recsys-bench.lock \\
        .venv/bin/python -m benchmarks.group_by --data-dir ../shared/data --index-root /tmp/instacart-groups

Builds (once, reused from --index-root) an HNSW index of the 48,688 products with their aisle (134) and department
(21) as metadata. Queries are the 1,000 held-out product embeddings. Then:

1. design variants, in process (`api.grouping.grouped_body`, no HTTP): the exact grouped scan against the
   approximate path with different over-fetch and candidate settings: time per query and recall;
2. single requests, one at a time, through the Starlette TestClient and through a real `recsys-serve` (1 worker,
   keep-alive HTTP): plain /infer k=10, group_by aisle / department on the default path (an exact scan at this
   size) and on the approximate path (forced with group_exact_budget 0), /similar (ip and cosine): p50/p99;
3. for every grouped answer, against exact per-category search computed in numpy (float64): the share of the true
   best categories returned (tie-aware), and per returned group the tie-aware recall of its products.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import common
from benchmarks.common import F32

DATASET = "instacart_products"
FIELDS = ("aisle", "department")
TIE_RTOL = 1e-5


def build_index(data: Path, root: Path) -> None:
    from index_builder.build import BuildOptions, build
    from index_builder.embeddings import Embeddings
    from index_format import layout

    if (root / layout.CURRENT_LINK).exists():
        return
    with open(data / "items_meta.csv", newline="") as handle:
        meta = list(csv.DictReader(handle))
    embeddings = Embeddings(
        ids=np.load(data / "item_ids.npy"),
        vectors=np.load(data / "items.npy"),
        metadata={name: [row[name] for row in meta] for name in FIELDS},
    )
    started = time.perf_counter()
    build(embeddings, root, None, BuildOptions(kind="hnsw"))
    print(f"built {root} in {time.perf_counter() - started:.0f}s", flush=True)


# ---- exact reference -------------------------------------------------------------------------------------------------


class Truth:
    """Exact per-category search in float64 over the served rows (the index's row order)."""

    def __init__(self, vectors: F32, codes: dict[str, np.ndarray], names: dict[str, list[str]]) -> None:
        self.vectors = vectors.astype(np.float64)
        self.codes = codes
        self.names = names
        self.members = {field: [np.flatnonzero(codes[field] == c) for c in range(len(names[field]))] for field in codes}

    def grouped(self, q: F32, field: str, group_size: int, groups: int) -> tuple[list[str], list[float], np.ndarray]:
        """(best category names, their best scores, all scores) — categories ranked by best score then name."""
        scores = self.vectors @ q.astype(np.float64)
        best = np.array([scores[m].max() if m.size else -np.inf for m in self.members[field]])
        order = np.lexsort((np.arange(best.size), -best))[:groups]
        return [self.names[field][c] for c in order], [float(best[c]) for c in order], scores

    def group_recall(self, scores: np.ndarray, field: str, name: str, got_rows: list[int], group_size: int) -> float:
        """Tie-aware recall of one returned group against exact search restricted to its category."""
        members = self.members[field][self.names[field].index(name)]
        truth = np.sort(scores[members])[::-1][:group_size]
        if truth.size == 0:
            return 1.0
        kth = truth[-1]
        hits = sum(1 for row in got_rows if scores[row] >= kth - TIE_RTOL * abs(kth) - 1e-9)
        return min(hits, truth.size) / truth.size


def score_answers(
    truth: Truth, reader: Any, xq: F32, answers: list[dict[str, Any]], field: str, group_size: int, groups: int
) -> dict[str, Any]:
    category_found = category_total = 0
    per_group: list[float] = []
    per_rank_hits = np.zeros(groups)
    exact_groups = 0
    for q, answer in zip(xq, answers, strict=True):
        true_names, true_best, scores = truth.grouped(q, field, group_size, groups)
        cut = true_best[-1]
        got = answer["groups"]
        for rank, group in enumerate(got):
            rows = reader.rows_of_ids([hit["id"] for hit in group["recommendations"]]).tolist()
            best = scores[rows[0]]
            tied_in = group["category"] in true_names or best >= cut - TIE_RTOL * abs(cut) - 1e-9
            category_found += tied_in
            if rank < len(true_best):
                per_rank_hits[rank] += abs(best - true_best[rank]) <= TIE_RTOL * abs(true_best[rank]) + 1e-6
            recall = truth.group_recall(scores, field, group["category"], rows, group_size)
            per_group.append(recall)
            exact_groups += recall == 1.0
        category_total += len(true_names)
    return {
        "category_recall": category_found / category_total,
        "group_item_recall_mean": float(np.mean(per_group)) if per_group else None,
        "group_item_recall_min": float(np.min(per_group)) if per_group else None,
        "groups_exact_fraction": exact_groups / max(1, len(per_group)),
        "rank_best_score_match": (per_rank_hits / len(answers)).round(4).tolist(),
        "groups_scored": len(per_group),
    }


# ---- timing ----------------------------------------------------------------------------------------------------------


def time_calls(call: Callable[[int], Any], count: int) -> tuple[dict[str, float], list[Any]]:
    call(0)  # first-touch costs are not what a warm server pays
    latencies, outputs = [], []
    for i in range(count):
        started = time.perf_counter()
        outputs.append(call(i))
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000.0
    stats = {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "requests": count,
    }
    return stats, outputs


def design_variants(loaded: Any, settings: Any, xq: F32, truth: Truth, count: int) -> list[dict[str, Any]]:
    """In-process: the exact grouped scan and the approximate path under several over-fetch / candidate settings."""
    from api import grouping
    from api.grouping import GroupTuning, parse_grouped_infer

    budget = settings.group_exact_budget
    variants: list[tuple[str, GroupTuning]] = [
        ("exact grouped scan (the default at this size)", GroupTuning(budget)),
        ("ann: fetch>=100, 2 x groups candidates", GroupTuning(0, min_fetch=100, candidate_factor=2)),
        ("ann: fetch>=200, 4 x groups candidates (default)", GroupTuning(0)),
        ("ann: fetch>=400, 4 x groups candidates", GroupTuning(0, min_fetch=400)),
        ("ann: fetch>=200, every category found", GroupTuning(0, candidate_factor=100_000)),
        ("ann: fetch>=200, 4 x groups, never the full scan", GroupTuning(0, candidate_fraction=1.0)),
    ]
    out = []
    for field, group_size, groups in (("aisle", 3, 5), ("department", 3, 5), ("aisle", 10, 10), ("department", 10, 10)):
        for label, tuning in variants:
            requests = [
                parse_grouped_infer(
                    {
                        "name": "q",
                        "vector": xq[i].tolist(),
                        "group_by": field,
                        "group_size": group_size,
                        "groups": groups,
                    },
                    loaded.rules,
                )
                for i in range(count)
            ]
            stats, bodies, fell_back = timed_variant(grouping, loaded, requests, tuning, count)
            answers = [common_json(b) for b in bodies]
            quality = score_answers(truth, loaded.reader, xq[:count], answers, field, group_size, groups)
            row = {"field": field, "group_size": group_size, "groups": groups, "variant": label, **stats, **quality}
            row["tuning"] = asdict(tuning)
            row["fell_back_to_scan"] = fell_back
            print(
                f"  {field:10s} s={group_size:2d} g={groups:2d} {label:48s} p50 {stats['p50_ms']:7.2f} ms "
                f"p99 {stats['p99_ms']:7.2f} ms  categories {quality['category_recall']:.4f} "
                f"items/group {quality['group_item_recall_mean']:.4f}",
                flush=True,
            )
            out.append(row)
    return out


def timed_variant(
    grouping: Any, loaded: Any, requests: list[Any], tuning: Any, count: int
) -> tuple[dict[str, float], list[Any], float | None]:
    """Time one variant; also the share of approximate requests whose candidates fell back to the full scan."""
    fallbacks: list[bool] = []
    original = grouping._candidate_rows

    def counting(*args: Any, **kwargs: Any) -> Any:
        rows = original(*args, **kwargs)
        fallbacks.append(rows is None)
        return rows

    grouping._candidate_rows = counting
    try:

        def one(i: int) -> Any:
            request, spec = requests[i]
            return grouping.grouped_body(loaded, request, spec, grouping.plan_grouped(loaded, request, spec, tuning))

        stats, bodies = time_calls(one, count)
    finally:
        grouping._candidate_rows = original
    measured = fallbacks[1:]  # the warm-up call is not timed
    return stats, bodies, (round(sum(measured) / len(measured), 4) if measured else None)


def common_json(body: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through the API's encoder, so scores are what a client reads."""
    import orjson

    from api.responses import json_bytes

    decoded: dict[str, Any] = orjson.loads(json_bytes(body))
    return decoded


Post = Callable[[str, dict[str, Any]], Any]  # (path, body) -> decoded JSON answer (asserts 200)


def http_modes(post: Post, reader: Any, xq: F32, truth: Truth, count: int, ann: bool) -> list[dict[str, Any]]:
    """Single requests, one at a time, through `post`; ann: the app runs with group_exact_budget 0 (grouped modes
    only), else plain /infer, grouped (the default: exact scan at this size) and /similar."""
    ids = reader.external_ids(np.arange(count) * (reader.count // count))
    Make = Callable[[int], dict[str, Any]]
    modes: list[tuple[str, str, Make, tuple[str, int, int] | None]] = []
    if not ann:
        modes.append(("plain /infer k=10", "/infer", lambda i: {"name": "q", "vector": xq[i].tolist(), "k": 10}, None))
    for field in FIELDS:
        for group_size, groups in ((3, 5), (10, 10)):
            label = f"group_by {field} s={group_size} g={groups}" + (" (ann path)" if ann else "")
            spec = (field, group_size, groups)

            def payload(i: int, spec: tuple[str, int, int] = spec) -> dict[str, Any]:
                return {
                    "name": "q",
                    "vector": xq[i].tolist(),
                    "group_by": spec[0],
                    "group_size": spec[1],
                    "groups": spec[2],
                }

            modes.append((label, "/infer", payload, spec))
    if not ann:
        modes.append(("/similar k=10 ip", "/similar", lambda i: {"id": ids[i], "k": 10}, None))
        modes.append(("/similar k=10 cosine", "/similar", lambda i: {"id": ids[i], "k": 10, "metric": "cosine"}, None))
        modes.append(("/similar k=10 ip exact", "/similar", lambda i: {"id": ids[i], "k": 10, "exact": True}, None))
    out = []
    for label, path, make, spec in modes:

        def call(i: int, path: str = path, make: Callable[[int], dict[str, Any]] = make) -> Any:
            return post(path, make(i))

        stats, answers = time_calls(call, count)
        row: dict[str, Any] = {"mode": label, "path": path, **stats}
        if spec is not None:
            row.update(score_answers(truth, reader, xq[:count], answers, spec[0], spec[1], spec[2]))
        print(
            f"  {label:40s} p50 {stats['p50_ms']:7.2f} ms  p99 {stats['p99_ms']:7.2f} ms"
            + (
                f"  categories {row['category_recall']:.4f}  items/group {row['group_item_recall_mean']:.4f}"
                if spec
                else ""
            ),
            flush=True,
        )
        out.append(row)
    return out


@contextlib.contextmanager
def running_server(root: Path, extra_env: dict[str, str]) -> Iterator[Post]:
    """recsys-serve with one worker on a free loopback port; stopped (by its pid) on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    script = Path(sys.executable).with_name("recsys-serve")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "api"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **extra_env}
    process = subprocess.Popen(
        [*command, "--index-root", str(root), "--port", str(port), "--workers", "1", "--log-level", "warning"], env=env
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"recsys-serve exited with {process.returncode}")
            try:
                connection.request("GET", "/readyz")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                connection.close()
            if time.monotonic() > deadline:
                raise RuntimeError("recsys-serve not ready after 120 s")
            time.sleep(0.3)

        def post(path: str, body: dict[str, Any]) -> Any:
            connection.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            assert response.status == 200, data[:300]
            return orjson.loads(data)

        yield post
    finally:
        connection.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _poster(client: Any) -> Post:
    def post(path: str, body: dict[str, Any]) -> Any:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text[:300]
        return response.json()

    return post


def run(args: argparse.Namespace) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    data = args.data_dir / DATASET
    build_index(data, args.index_root)
    xq: F32 = np.load(data / "queries_heldout.npy")[: args.queries]
    settings = Settings(index_root=args.index_root, max_k=100)
    with TestClient(create_app(settings)) as client:
        loaded = client.app.state.holder.current  # type: ignore[attr-defined]
        reader = loaded.reader
        codes = {field: np.asarray(reader.metadata_codes[field]) for field in FIELDS}
        truth = Truth(np.asarray(reader.vectors), codes, {f: reader.manifest.metadata[f] for f in FIELDS})
        sizes = {f: np.bincount(codes[f][codes[f] >= 0]).tolist() for f in FIELDS}
        print("design variants (in process):", flush=True)
        variants = design_variants(loaded, settings, xq, truth, args.queries)
        print("single requests through the TestClient:", flush=True)
        in_testclient = http_modes(_poster(client), reader, xq, truth, args.queries, ann=False)
        forced = Settings(index_root=args.index_root, max_k=100, group_exact_budget=0)
        with TestClient(create_app(forced)) as ann_client:
            in_testclient += http_modes(_poster(ann_client), reader, xq, truth, args.queries, ann=True)
        served: list[dict[str, Any]] = []
        if args.server:
            print("single requests to recsys-serve (1 worker) over keep-alive HTTP:", flush=True)
            with running_server(args.index_root, {}) as post_server:
                served = http_modes(post_server, reader, xq, truth, args.queries, ann=False)
            with running_server(args.index_root, {"RECSYS_GROUP_EXACT_BUDGET": "0"}) as post_server:
                served += http_modes(post_server, reader, xq, truth, args.queries, ann=True)
        index = {
            "version": reader.manifest.version,
            "kind": reader.manifest.kind,
            "default_params": reader.manifest.default_params,
            "recall_at_k": reader.manifest.recall_at_k,
            "count": reader.count,
            "dim": reader.dim,
            "category_sizes": {
                f: {"count": len(s), "min": min(s), "median": float(np.median(s)), "max": max(s)}
                for f, s in sizes.items()
            },
        }
    return {
        "machine": common.machine_info(),
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "dataset": DATASET,
        "queries": f"queries_heldout.npy[:{args.queries}] (held-out product embeddings)",
        "index": index,
        "design_variants_in_process": variants,
        "single_requests_testclient": in_testclient,
        "single_requests_server": served,
        "notes": [
            "category_recall: share of the true best `groups` categories returned (a category tied with the true "
            "last one counts); group_item_recall_*: per returned group, tie-aware recall@group_size against exact "
            "search restricted to that category; rank_best_score_match: per rank, how often the returned group's "
            "best score equals the true one at that rank.",
            "Latency: one request at a time, warm; single_requests_testclient goes through starlette's TestClient "
            "(in process), single_requests_server through a real recsys-serve (1 worker, OMP_NUM_THREADS=1) over one "
            "keep-alive connection (http.client). '(ann path)' modes run with group_exact_budget 0, which forces the "
            "approximate path that catalogues above the budget use.",
        ],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.group_by", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--index-root", type=Path, default=Path("/tmp/recsys-instacart-groups"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-server", dest="server", action="store_false", help="skip the real-server run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (one search thread, as served)", flush=True)
    result = run(args)
    common.write_json(args.out / "group_by.json", result)
    print(f"wrote {args.out / 'group_by.json'}")


if __name__ == "__main__":
    main()
