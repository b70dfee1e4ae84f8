"""recsys-score throughput and memory: users/s of the local engine (1 and 2 processes) and of the Ray engine (a real
two-node Ray cluster on this machine), ANN and exact, peak memory of every process involved, and HTTP /batch on the
same index in the same run (recsys-serve, 2 workers, wrk posting 1,000 users per request, with 2 and with 4
connections: the comparison takes the better of the two, so that no server core sits idle).

    flock /tmp/recsys-bench.lock python -m benchmarks.bulk_score --dataset gowalla_als --data-dir ../shared/data
    flock /tmp/recsys-bench.lock python -m benchmarks.bulk_score --dataset synthetic --items 1000000 --users 1000000

--repeat R (gowalla_als) scores the 10k users R times over (one file of R × 10k rows) so that a run lasts seconds,
not a fraction of one; --trials N runs every local configuration N times and reports the median run (all trials
are kept in the JSON): the machine is shared, and single short runs vary by ±30%.

Memory is sampled every 0.5 s over the job's process tree (driver + pool processes; for Ray, also every process the
cluster's nodes started): RSS counts the mapped index pages in every process that touched them, PSS shares them out,
so PSS summed over processes is the machine's real cost. Inputs and indexes live under --work-dir (not the repo).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import machine_info, write_json
from benchmarks.http_load import Server, api_command, free_port, run_wrk, server_env, write_bodies
from benchmarks.memory import process_tree, smaps_rollup
from benchmarks.synthetic import SyntheticSpec, generate_items, generate_queries

LOG = logging.getLogger("bulk_score")
REPO = Path(__file__).resolve().parent.parent
USERS_PER_FILE = 100_000
ROW_GROUP = 65_536
HTTP_BATCH = 1000


# ---- inputs ------------------------------------------------------------------------------------------------------


def write_users(folder: Path, vectors: np.ndarray, user_ids: Sequence[Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, start in enumerate(range(0, len(vectors), USERS_PER_FILE)):
        stop = min(start + USERS_PER_FILE, len(vectors))
        flat = pa.array(np.ascontiguousarray(vectors[start:stop]).reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, (stop - start + 1) * vectors.shape[1], vectors.shape[1], dtype=np.int32))
        table = pa.table(
            {"user_id": pa.array(list(user_ids[start:stop])), "vector": pa.ListArray.from_arrays(offsets, flat)}
        )
        pq.write_table(table, folder / f"users-{number:04d}.parquet", row_group_size=ROW_GROUP)
    return folder


def build_index(items: Path, ids: Path | None, queries: Path, root: Path, kind: str) -> Path:
    if (root / "current").exists():
        return root
    command = [str(Path(sys.executable).with_name("index-builder")), "build", str(items), "--queries", str(queries)]
    command += ["--kind", kind, "--out", str(root), "--quiet", *(["--ids", str(ids)] if ids else [])]
    LOG.info("building: %s", " ".join(command))
    subprocess.run(command, check=True)
    return root


def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, Path], np.ndarray]:
    """(index root, {name: users folder}, the users' vectors for the HTTP bodies)."""
    work = args.work_dir / args.tag
    work.mkdir(parents=True, exist_ok=True)
    if args.dataset == "gowalla_als":
        folder = args.data_dir / "gowalla_als"
        queries = np.load(folder / "queries.npy").astype(np.float32)
        root = build_index(
            folder / "items.npy", folder / "item_ids.npy", folder / "queries.npy", work / "index", args.kind
        )
        users = np.tile(queries, (args.repeat, 1)) if args.repeat > 1 else queries
    else:
        spec = SyntheticSpec(n=args.items, d=args.d)
        items_path, tune_path = work / "items.npy", work / "tuning_queries.npy"
        if not items_path.exists():
            items = np.lib.format.open_memmap(
                work / "items.tmp.npy", mode="w+", dtype=np.float32, shape=(spec.n, spec.d)
            )
            generate_items(spec, items)
            items.flush()
            del items
            (work / "items.tmp.npy").rename(items_path)
            np.save(tune_path, generate_queries(spec, 2000, stream=1))
        users = generate_queries(spec, args.users, stream=2)
        root = work / "index" if args.data_only else build_index(items_path, None, tune_path, work / "index", args.kind)
    folders: dict[str, Path] = {}
    sizes = sorted({*args.rss_users, *([args.ray_users] if args.ray_users else []), len(users)})
    for size in sizes:
        folder = work / f"users-{size}"
        if not folder.exists():
            write_users(folder, users[:size], [f"u{i}" for i in range(size)])
        folders[str(size)] = folder
    exact_size = min(args.exact_users or len(users), len(users))
    folders["exact"] = folders.get(str(exact_size)) or write_users(
        work / f"users-{exact_size}", users[:exact_size], [f"u{i}" for i in range(exact_size)]
    )
    return root, folders, users


# ---- measuring one job -------------------------------------------------------------------------------------------


class MemorySampler:
    """Peak memory over the process trees of the given root pids, sampled every `interval` seconds."""

    def __init__(self, roots: Sequence[int], interval: float = 0.5) -> None:
        self.roots, self.interval = list(roots), interval
        self.peak = {"rss_sum": 0, "pss_sum": 0, "rss_max_process": 0, "processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = {pid for root in self.roots for pid in process_tree(root)}
        rss, pss, biggest = 0, 0, 0
        for pid in pids:
            with contextlib.suppress(OSError):
                rollup = smaps_rollup(pid)
                rss += rollup.get("Rss", 0)
                pss += rollup.get("Pss", 0)
                biggest = max(biggest, rollup.get("Rss", 0))
        for name, value in (("rss_sum", rss), ("pss_sum", pss), ("rss_max_process", biggest), ("processes", len(pids))):
            self.peak[name] = max(self.peak[name], value)

    @contextlib.contextmanager
    def running(self) -> Iterator[MemorySampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def run_job(
    users: Path,
    root: Path,
    out: Path,
    engine: str,
    workers: int,
    exact: bool,
    batch_size: int,
    extra_roots: Sequence[int],
    ray_address: str | None,
    k: int = 10,
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        str(Path(sys.executable).with_name("recsys-score")),
        str(users),
        "--index-root",
        str(root),
        "--out",
        str(out),
    ]
    command += ["--engine", engine, "--workers", str(workers), "--batch-size", str(batch_size), "--k", str(k)]
    command += [*(["--exact"] if exact else []), *(["--ray-address", ray_address] if ray_address else [])]
    LOG.info("%s", " ".join(command))
    started = time.monotonic()
    log = out.with_suffix(".log")
    with open(log, "wb") as err:
        process = subprocess.Popen(command, env=server_env(), stdout=subprocess.DEVNULL, stderr=err)
        sampler = MemorySampler([process.pid, *extra_roots])
        with sampler.running():
            code = process.wait()
    wall = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"recsys-score exited {code}: {log.read_text()[-2000:]}")
    manifest = json.loads((out / "_manifest.json").read_text())
    users_count = manifest["counts"]["scored"]
    result = {
        "engine": engine,
        "workers": workers,
        "mode": "exact" if exact else "ann",
        "users": users_count,
        "batch_size": batch_size,
        "wall_seconds": round(wall, 2),
        "users_per_s_wall": round(users_count / wall, 1),
        "scoring_seconds": manifest["timings"]["scoring_seconds"],
        "users_per_s_scoring": manifest["timings"]["users_per_second"],
        "checks_seconds": manifest["timings"]["checks_seconds"],
        "startup_seconds": manifest["timings"].get("startup_seconds", 0.0),  # local: processes started, index mapped
        "shutdown_seconds": manifest["timings"].get("shutdown_seconds", 0.0),  # local: processes stopped
        "peak_memory_bytes": dict(sampler.peak),
        "output_bytes": sum(p.stat().st_size for p in out.glob("part-*.parquet")),
    }
    LOG.info(
        "%s w=%d %s: %d users, %.0f users/s scoring (%.0f wall), peak RSS %.0f MiB (largest process), PSS sum %.0f MiB",
        engine, workers, result["mode"], users_count, result["users_per_s_scoring"], result["users_per_s_wall"],
        sampler.peak["rss_max_process"] / 2**20, sampler.peak["pss_sum"] / 2**20,
    )  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    return result


def median_run(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the median scoring users/s (the lower middle one for an even count), with every trial's."""
    ordered = sorted(trials, key=lambda run: run["users_per_s_scoring"])
    run = dict(ordered[(len(ordered) - 1) // 2])
    if len(trials) > 1:
        run["trials_users_per_s_scoring"] = [trial["users_per_s_scoring"] for trial in trials]
    return run


# ---- where a user's time goes (in-process, one thread) --------------------------------------------------------


def stage_costs(root: Path, users: Path, batch_size: int, exact: bool, chunks: int = 20) -> dict[str, float]:
    """CPU µs per user of each step a pool process takes for the first `chunks` chunks, best of 3 passes, one
    thread: reading the parquet chunk (parent), pickling it to the process and back, the search alone
    (`IndexReader.execute` of the chunk's plan), `score_chunk` (search, ids, output table) on the vectorised path and
    through `Searcher.hits` (one Hits per user), parquet encoding, and the part written with fsync; exact mode
    also times faiss's flat search (BLAS GEMM over the stored vectors) on the same chunks."""
    import pickle

    import faiss

    from bulk_score import scoring
    from bulk_score.output import write_atomically
    from bulk_score.users import UserSource, parse_vectors
    from index_format.query import Query
    from index_format.searcher import Searcher

    faiss.omp_set_num_threads(1)
    searcher = Searcher.open(root, verify=False)
    source = UserSource.open(users, None)
    options = scoring.ScoreOptions(k=10, exact=exact)

    def best(step: Any) -> float:
        times = []
        for _ in range(3):
            started = time.process_time()
            step()
            times.append(time.process_time() - started)
        return round(min(times) * 1e6 / count, 2)

    def read() -> list[Any]:
        return [chunk for _, chunk in zip(range(chunks), source.chunks(batch_size), strict=False)]

    def per_user_path() -> None:
        """score_chunk as it was before the vectorised path: every user's Hits from `Searcher.hits`."""
        vectorised = scoring.shared_plan_hits
        scoring.shared_plan_hits = lambda *_: None
        try:
            for chunk in loaded:
                scoring.score_chunk(searcher, options, chunk)
        finally:
            scoring.shared_plan_hits = vectorised

    loaded = read()
    count = sum(len(chunk) for chunk in loaded)
    matrices = [parse_vectors(chunk.vectors, searcher.dim).matrix for chunk in loaded]
    plan = searcher.engine.plan(Query(np.zeros(searcher.dim, np.float32), 10, exact))
    tables = [scoring.score_chunk(searcher, options, chunk) for chunk in loaded]
    folder = root.parent / "stage-costs"
    folder.mkdir(exist_ok=True)
    result = {
        "users": count,
        "batch_size": batch_size,
        "read_parquet_chunk": best(read),
        "pickle_round_trip": best(lambda: [pickle.loads(pickle.dumps(chunk, protocol=5)) for chunk in loaded]),
        "search_only": best(lambda: [searcher.reader.execute(plan, xq, plan.fetch) for xq in matrices]),
        "score_chunk_vectorised": best(lambda: [scoring.score_chunk(searcher, options, chunk) for chunk in loaded]),
        "score_chunk_per_user": best(per_user_path),
        "parquet_encode": best(lambda: [pq.write_table(table, pa.BufferOutputStream()) for table in tables]),
        "write_part_fsync_wall": 0.0,
    }
    started = time.perf_counter()
    for number, table in enumerate(tables):
        write_atomically(folder / f"part-{number}.parquet", table)
    result["write_part_fsync_wall"] = round((time.perf_counter() - started) * 1e6 / count, 2)
    shutil.rmtree(folder, ignore_errors=True)
    if exact and searcher.reader.vectors is not None:
        flat = faiss.IndexFlatIP(searcher.dim)
        flat.add(np.ascontiguousarray(searcher.reader.vectors))
        result["faiss_flat_gemm"] = best(lambda: [flat.search(xq, 10) for xq in matrices])
        del flat
    LOG.info("per-user CPU µs (%s, batch %d): %s", "exact" if exact else "ann", batch_size, result)
    return result


# ---- HTTP /batch on the same index ---------------------------------------------------------------------------


def http_batch(
    root: Path, users: np.ndarray, work: Path, k: int, duration: float, workers: int, connections: Sequence[int]
) -> list[dict[str, Any]]:
    port = free_port()
    server = Server(
        "recsys-serve", api_command(root, port, workers, "recsys-serve", []), server_env(), work / "serve.log", port
    )
    points = []
    try:
        server.wait_ready(workers, timeout=300)
        for exact in (False, True):
            bodies = write_bodies(
                work / f"batch-{exact}.jsonl", users[: 8 * HTTP_BATCH], k, exact, batch_size=HTTP_BATCH
            )
            run_wrk(port, "/batch", bodies, max(connections), 1, 2.0, 60.0)  # warm-up
            for count in connections:
                point = run_wrk(port, "/batch", bodies, count, 1, duration, 60.0)
                point.update(mode="exact" if exact else "ann", users_per_request=HTTP_BATCH, server_workers=workers)
                point["users_per_s"] = round(point["req_per_s"] * HTTP_BATCH, 1)
                LOG.info(
                    "HTTP /batch %s c=%d: %.0f users/s (%d errors)",
                    point["mode"], count, point["users_per_s"], point["non_2xx"],
                )  # fmt: skip
                points.append(point)
    finally:
        server.stop()
    return points


# ---- main ------------------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bulk_score", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("gowalla_als", "synthetic"), required=True)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic items")
    p.add_argument("--users", type=int, default=1_000_000, help="synthetic users")
    p.add_argument("--d", type=int, default=64, help="synthetic dimension")
    p.add_argument("--kind", default="ivf", help="index kind to build")
    p.add_argument("--workers", type=_ints, default=[1, 2], help="local engine process counts")
    p.add_argument("--modes", default="ann,exact")
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--exact-users", type=int, default=0, help="score only the first N users in exact mode (0: all)")
    p.add_argument("--rss-users", type=_ints, default=[], help="also run local (2 processes, ANN) on these user counts")
    p.add_argument("--http-duration", type=float, default=10.0, help="seconds of wrk load per /batch point (0: skip)")
    p.add_argument("--http-connections", type=_ints, default=[2, 4], help="wrk connections of the /batch points")
    p.add_argument("--repeat", type=int, default=1, help="gowalla_als: score its users this many times over")
    p.add_argument("--trials", type=int, default=1, help="runs of each local configuration (the median is reported)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/recsys-bulk-bench"))
    p.add_argument("--data-only", action="store_true", help="synthetic: only generate the items and users files")
    p.add_argument("--stage-costs", action="store_true", help="also time each step of scoring a chunk in-process")
    p.add_argument("--ray-users", type=int, default=0, help="score only the first N users with Ray (0: all)")
    p.add_argument("--tag", help="names the work directory (inputs, index) and, by default, the results file")
    p.add_argument("--result-name", help="results file: bulk_score_<NAME>.json (default: the tag)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.tag = args.tag or (args.dataset if args.dataset != "synthetic" else f"synthetic_{args.items}x{args.d}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root, folders, users = prepare(args)
    if args.data_only:
        LOG.info("inputs ready: %s", {name: str(path) for name, path in folders.items()})
        return 0
    work = args.work_dir / args.tag
    full = folders[str(len(users))]
    modes = args.modes.split(",")
    engines = args.engines.split(",")
    runs: list[dict[str, Any]] = []
    for mode in modes:
        source = folders["exact"] if mode == "exact" else full
        if "local" in engines:
            for workers in args.workers:
                trials = [
                    run_job(
                        source, root, work / "out", "local", workers, mode == "exact", args.batch_size, [], None, args.k
                    )
                    for _ in range(args.trials)
                ]
                runs.append(median_run(trials))
    if "ray" in engines:
        from benchmarks.ray_local import LocalRayCluster

        with LocalRayCluster(nodes=2, cpus=1) as cluster:
            for mode in modes:
                source = folders["exact"] if mode == "exact" else full
                if args.ray_users and mode != "exact":
                    source = folders[str(min(args.ray_users, len(users)))]
                run = run_job(
                    source,
                    root,
                    work / "out",
                    "ray",
                    2,
                    mode == "exact",
                    args.batch_size,
                    cluster.pids(),
                    cluster.address,
                    args.k,
                )
                run["ray_nodes"] = 2
                runs.append(run)
    rss_runs = [
        run_job(folders[str(size)], root, work / "out", "local", 2, False, args.batch_size, [], None, args.k)
        for size in args.rss_users
        if size != len(users)
    ]
    stages = {}
    if args.stage_costs:
        for mode in modes:
            source = folders["exact"] if mode == "exact" else full
            stages[mode] = stage_costs(root, source, args.batch_size, mode == "exact")
    http = []
    if args.http_duration > 0:
        http = http_batch(root, users, work, args.k, args.http_duration, 2, args.http_connections)
    ratios = {}
    for mode in modes:
        best = max((p["users_per_s"] for p in http if p["mode"] == mode), default=0.0)
        local2 = [r for r in runs if r["engine"] == "local" and r["workers"] == 2 and r["mode"] == mode]
        if best and local2:
            ratios[mode] = round(local2[0]["users_per_s_scoring"] / best, 2)
    manifest = json.loads((root / "current" / "manifest.json").read_text())
    result = {
        "benchmark": "bulk_score",
        "tag": args.tag,
        "command": [sys.executable, "-m", "benchmarks.bulk_score", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine_info(),
        "index": {
            k: manifest[k] for k in ("version", "kind", "factory", "count", "dim", "default_params", "recall_at_k")
        },
        "users": len(users),
        "distinct_users": len(users) // max(args.repeat, 1) if args.dataset == "gowalla_als" else len(users),
        "trials": args.trials,
        "runs": runs,
        "rss_by_users": [
            {
                "users": r["users"],
                "peak_rss_max_process": r["peak_memory_bytes"]["rss_max_process"],
                "peak_pss_sum": r["peak_memory_bytes"]["pss_sum"],
            }
            for r in [
                *rss_runs,
                *[r for r in runs if r["engine"] == "local" and r["workers"] == 2 and r["mode"] == "ann"],
            ]
        ],
        "http_batch": http,
        "local2_over_http_batch": ratios,  # local engine, 2 processes, over the better HTTP /batch point
        "stage_costs_us_per_user": stages,  # --stage-costs: CPU µs per user of each step, one thread
    }
    path = args.out / f"bulk_score_{args.result_name or args.tag}.json"
    write_json(path, result)
    LOG.info("wrote %s; local (2 processes) / HTTP /batch users/s: %s", path, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
