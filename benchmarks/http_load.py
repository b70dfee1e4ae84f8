"""HTTP load benchmark: `recsys-serve` under `wrk` on loopback, next to a fixed-answer floor, with exact search.

    python -m benchmarks.http_load --dataset gowalla_als --data-dir ../shared/data --workers 2 \
        --concurrency 16,64 --duration 10 --out benchmarks/results
    python -m benchmarks.http_load --index-root ROOT ...            # take an existing index instead of building

For each worker count it starts two servers on free loopback ports, each with that many uvicorn workers: the real
service (`recsys-serve`) and the floor (`benchmarks/floor_app.py`, same uvicorn, a fixed answer of the same shape).
It checks the service over HTTP first (ANN recall@k against exact truth, `exact: true` against the truth), then
drives, at every concurrency, POST /infer on the floor, /infer (ANN, the index's tuned params), /infer with
`exact: true`; optionally a filtered /infer (--filter), the Flask design this service replaces
(--flask-reference) and the service at another source tree (--compare-tree, e.g. an older commit);
then POST /batch of several sizes (ANN and exact). Every point is one `wrk` run rotating over real query bodies
(benchmarks/wrk/rotate.lua). Everything it started is stopped (process groups; also on Ctrl-C).
Writes http_<tag>.json and http_<tag>.png. Run real measurements under `flock /tmp/recsys-bench.lock`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from benchmarks import common, flask_reference
from benchmarks.synthetic import SyntheticSpec, generate_items, generate_queries
from index_builder.build import TUNING_QUERIES_FILE, BuildOptions, build
from index_builder.embeddings import Embeddings
from index_format import layout
from index_format.reader import IndexReader

LOG = logging.getLogger("benchmarks.http_load")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

REPO = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "rotate.lua"
HOST = "127.0.0.1"
DATASETS = ("gowalla_als", "instacart_products", "synthetic")
TIE_RTOL = 1e-5
TARGET_FLOOR_RATIO = 0.6
TARGET_P99_MS = 10.0
TARGET_CONCURRENCY = 64


# ---- machine and provenance ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """benchmarks.common's record (cores, CPU model, date, commit, ...) plus the serving stack's versions and wrk's."""
    info = common.machine_info()
    for package in ("starlette", "uvicorn", "orjson", "uvloop", "httptools"):
        try:
            info["versions"][package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info["versions"][package] = "absent"
    info["wrk"] = _wrk_version()
    info["source_digests"] = source_digests()
    return info


def source_digests(packages: Sequence[str] = ("api", "index_format", "index_builder", "benchmarks")) -> dict[str, str]:
    """sha256 over each package's .py files (names and contents): identifies the code measured even when it is not
    committed yet."""
    out = {}
    for package in packages:
        digest = hashlib.sha256()
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
        out[package] = digest.hexdigest()[:16]
    return out


def _wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).split("Copyright")[0].strip() or None


# ---- servers -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """A server started in its own process group, so stopping it also stops every uvicorn worker it spawned."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log_path: Path, port: int, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        LOG.info("starting %s on port %d: %s", name, port, " ".join(command))
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, workers: int, timeout: float, ready_path: str = "/readyz") -> float:
        """Poll until ready_path answers 200 and every worker has logged its start-up (uvicorn only accepts
        connections in a worker once its lifespan, i.e. loading and warming, is done). Returns seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if http_get_status(self.port, ready_path) == 200:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)
        # Other workers may still be loading: wait for their "startup complete" lines (bounded).
        logged_deadline = time.monotonic() + max(30.0, time.monotonic() - started + 10.0)
        while self._startups_logged() < workers and time.monotonic() < min(deadline, logged_deadline):
            time.sleep(0.2)
        if self._startups_logged() < workers:
            LOG.warning("%s: %d of %d workers logged start-up", self.name, self._startups_logged(), workers)
        return time.monotonic() - started

    def _startups_logged(self) -> int:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace").count("Application startup complete")
        return 0

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace` seconds."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                LOG.warning("%s did not stop in %.0fs: SIGKILL", self.name, grace)
        # Workers can outlive the supervisor: clear the group either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._log.close()
        LOG.info("stopped %s (pid %d)", self.name, self.pid)


def api_command(index_root: Path, port: int, workers: int, launcher: str, extra: Sequence[str]) -> list[str]:
    """`recsys-serve` (the console script when installed, else its entry point through this interpreter); or, with
    launcher "nodelay", the service's app factory run by benchmarks.floor_app's launcher, which sets TCP_NODELAY on
    the listening socket (see floor_app's docstring) and otherwise runs uvicorn as recsys-serve does."""
    where = ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    if launcher == "nodelay":
        return [sys.executable, "-m", "benchmarks.floor_app", "--factory", "api.app:create_app", *where]
    script = Path(sys.executable).parent / "recsys-serve"
    entry = "import sys; from api.__main__ import main; sys.exit(main())"
    head = [str(script)] if script.exists() else [sys.executable, "-c", entry]
    return [*head, "--index-root", str(index_root), *where, *extra]


def floor_command(port: int, workers: int, k: int, id_type: str, extra: Sequence[str]) -> list[str]:
    where = ["--host", HOST, "--port", str(port), "--workers", str(workers), "--k", str(k), "--id-type", id_type]
    return [sys.executable, "-m", "benchmarks.floor_app", *where, *extra]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with one OpenMP/BLAS thread per process unless set (as recsys-serve does)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def started(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the servers."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- a small HTTP client for checks --------------------------------------------------------------------------


def http_get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class Client:
    """One keep-alive connection; JSON in and out."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def get(self, path: str) -> tuple[int, Any]:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        return response.status, orjson.loads(response.read() or b"null")

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, orjson.loads(response.read() or b"null")

    def close(self) -> None:
        self.conn.close()


# ---- request bodies ------------------------------------------------------------------------------------------


def vector_json(vector: F32) -> str:
    """9 significant digits: float32 values round-trip exactly."""
    return "[" + ",".join(f"{value:.9g}" for value in vector.tolist()) + "]"


def infer_body(name: str, vector: F32, k: int, exact: bool, filter: dict[str, list[str]] | None = None) -> str:
    extra = ',"exact":true' if exact else ""
    if filter:
        extra += ',"filter":' + json.dumps(filter, separators=(",", ":"))
    return f'{{"name":{json.dumps(name)},"vector":{vector_json(vector)},"k":{k}{extra}}}'


def write_bodies(
    path: Path,
    queries: F32,
    k: int,
    exact: bool,
    batch_size: int = 0,
    max_bodies: int = 1000,
    filter: dict[str, list[str]] | None = None,
) -> Path:
    """JSON-lines file of request bodies for rotate.lua: single /infer bodies, or /batch arrays of batch_size."""
    singles = [infer_body(f"user{i}", queries[i], k, exact, filter) for i in range(queries.shape[0])]
    with open(path, "w") as out:
        if batch_size <= 0:
            for body in singles[:max_bodies]:
                out.write(body + "\n")
        else:
            count = max(2, min(8, len(singles) // batch_size))
            for b in range(count):
                picked = [singles[(b * batch_size + j) % len(singles)] for j in range(batch_size)]
                out.write("[" + ",".join(picked) + "]\n")
    return path


# ---- datasets and the index ----------------------------------------------------------------------------------


@dataclass
class Dataset:
    """What to build and how to check it: build_queries tune the index; load_queries drive the load and the
    recall check, with their exact top-k scores (truth_scores) computed without the service."""

    name: str
    embeddings: Embeddings
    build_queries: F32
    load_queries: F32
    truth_scores: F32  # (nq, k) exact top-k inner products of load_queries, best first
    items: F32  # original row order, for exact scores of returned ids
    row_of_id: dict[Any, int]


def synthetic_embeddings(n: int, d: int, seed: int) -> tuple[Embeddings, F32, F32]:
    """benchmarks.synthetic items (ALS-like clusters and norm spread), tuning queries and disjoint load queries."""
    spec = SyntheticSpec(n=n, d=d, seed=seed)
    embeddings = Embeddings(
        ids=np.arange(n, dtype=np.int64), vectors=generate_items(spec), source_name=f"synthetic n={n} d={d} seed={seed}"
    )
    return embeddings, generate_queries(spec, 2000, stream=1), generate_queries(spec, 3000, stream=2)


def exact_scores_topk(items: F32, xq: F32, k: int) -> F32:
    """Exact top-k inner products per query (numpy, blocked): the truth, computed without faiss or the service."""
    out = np.empty((xq.shape[0], k), dtype=np.float32)
    for start in range(0, xq.shape[0], 64):
        block = xq[start : start + 64] @ items.T
        top = -np.partition(-block, k - 1, axis=1)[:, :k]
        out[start : start + 64] = -np.sort(-top, axis=1)
    return out


def load_dataset(
    name: str, data_dir: Path | None, k: int, n_check: int, synthetic: tuple[int, int], seed: int
) -> Dataset:
    """Items, tuning queries and load queries (disjoint) with exact truth."""
    if name == "synthetic":
        embeddings, build_queries, load_queries = synthetic_embeddings(synthetic[0], synthetic[1], seed)
        truth = exact_scores_topk(embeddings.vectors, load_queries[:n_check], k)
        return Dataset(name, embeddings, build_queries, load_queries, truth, embeddings.vectors, {})
    if data_dir is None:
        raise ValueError("--data-dir is required with --dataset " + name)
    folder = data_dir / name
    if name == "gowalla_als":
        query_file, gt_file = "queries.npy", "gt_scores.npy"
    elif name == "instacart_products":
        query_file, gt_file = "queries_heldout.npy", "gt_heldout_scores.npy"
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    items = np.ascontiguousarray(np.load(folder / "items.npy"), dtype=np.float32)
    ids = np.load(folder / "item_ids.npy").astype(np.int64)
    queries = np.ascontiguousarray(np.load(folder / query_file), dtype=np.float32)
    gt_scores = np.load(folder / gt_file)[:, :k].astype(np.float32)
    half = queries.shape[0] // 2
    embeddings = Embeddings(
        ids=ids,
        vectors=items,
        metadata=popularity_metadata(folder) if name == "gowalla_als" else {},
        source_name=f"{name}/items.npy",
        source_sha256=layout.sha256_of(folder / "items.npy"),
    )
    row_of_id = {int(v): i for i, v in enumerate(ids.tolist())}
    return Dataset(name, embeddings, queries[:half], queries[half:], gt_scores[half:], items, row_of_id)


def popularity_metadata(folder: Path) -> dict[str, list[str | None]]:
    """gowalla_als items by training interactions: "head" (top 1%), "torso" (next 9%), "tail" (the other 90%), so
    load tests can send filtered requests ("tail": long-tail recommendations, 90% of the rows, the ANN path with an
    ID selector; "torso": 9%, an exact scan of those rows)."""
    counts = np.load(folder / "item_train_count.npy")
    head, torso = np.percentile(counts, [99, 90])
    band = np.where(counts >= head, "head", np.where(counts >= torso, "torso", "tail"))
    return {"popularity": [str(b) for b in band]}


def build_or_reuse(dataset: Dataset, root: Path, options: BuildOptions, rebuild: bool) -> Path:
    """Build (kind `auto` tunes every kind and keeps the fastest reaching the target) unless ROOT/current already
    holds an index of the same source built with the same kind and target."""
    if not rebuild:
        with contextlib.suppress(layout.FormatError):
            manifest = layout.read_manifest(layout.resolve_current(root))
            same = manifest.source.get("name") == dataset.embeddings.source_name
            same = same and manifest.target_recall == options.target_recall and manifest.k == options.k
            same = same and (options.kind == "auto" or manifest.kind == options.kind)
            same = same and set(manifest.metadata) == set(dataset.embeddings.metadata)
            if same:
                LOG.info("reusing %s (%s %s)", layout.resolve_current(root), manifest.kind, manifest.default_params)
                return root
    LOG.info("building %s index of %s under %s", options.kind, dataset.name, root)
    started_at = time.perf_counter()
    version_dir, manifest = build(dataset.embeddings, root, dataset.build_queries, options)
    LOG.info(
        "built %s in %.0fs: %s %s, recall@%d %.4f",
        version_dir.name,
        time.perf_counter() - started_at,
        manifest.kind,
        manifest.default_params,
        manifest.k,
        manifest.recall_at_k,
    )
    return root


def index_summary(root: Path) -> dict[str, Any]:
    version_dir = layout.resolve_current(root)
    manifest = layout.read_manifest(version_dir)
    return {
        "root": str(root),
        "version": manifest.version,
        "kind": manifest.kind,
        "factory": manifest.factory,
        "count": manifest.count,
        "dim": manifest.dim,
        "id_type": manifest.id_type,
        "default_params": manifest.default_params,
        "exact_method": manifest.exact_method,
        "recall_at_k_manifest": manifest.recall_at_k,
        "k": manifest.k,
        "build_seconds": manifest.build_seconds,
        "index_file_bytes": (version_dir / layout.INDEX_FILE).stat().st_size,
        "bytes_on_disk": sum(p.stat().st_size for p in version_dir.iterdir() if p.is_file()),
    }


def checks_from_index(root: Path, k: int, n_check: int) -> tuple[F32, F32 | None, Any]:
    """For --index-root: load queries = the build's held-out tuning queries; truth from the raw vectors."""
    version_dir = layout.resolve_current(root)
    reader = IndexReader.open(version_dir, verify=False)
    path = version_dir / TUNING_QUERIES_FILE
    queries: F32
    if path.exists():
        queries = np.ascontiguousarray(np.load(path), dtype=np.float32)
    else:
        rng = np.random.default_rng(0)
        queries = rng.standard_normal((1000, reader.dim)).astype(np.float32)
    truth = None
    if reader.vectors is not None:
        truth = exact_scores_topk(np.asarray(reader.vectors), queries[:n_check], min(k, reader.count))
    return queries, truth, reader


# ---- checks over HTTP ----------------------------------------------------------------------------------------


def tie_aware_hits(true_scores_found: F32, kth: float) -> int:
    return int((true_scores_found >= kth - TIE_RTOL * abs(kth) - 1e-9).sum())


def http_checks(
    port: int, queries: F32, truth: F32 | None, k: int, score_of: ScoreFn, n_check: int, batch_probe: int = 20
) -> dict[str, Any]:
    """ANN and exact answers for n_check queries over HTTP; tie-aware recall@k of both against the truth (or, when
    no raw vectors are available, of ANN against the service's own exact answers)."""
    client = Client(port)
    try:
        status, info = client.get("/index")
        ann_hits = exact_hits = slots = 0
        problems: list[str] = []
        n = min(n_check, queries.shape[0])
        for i in range(n):
            answers = {}
            for exact in (False, True):
                status, body = client.post("/infer", infer_body(f"check{i}", queries[i], k, exact).encode())
                if status != 200 or body.get("name") != f"check{i}":
                    problems.append(f"query {i} exact={exact}: HTTP {status} {str(body)[:200]}")
                    break
                answers[exact] = body["recommendations"]
            if len(answers) < 2:
                continue
            kth = float(truth[i, k - 1]) if truth is not None else float(answers[True][-1]["score"])
            for exact, recs in answers.items():
                ids = [rec["id"] for rec in recs]
                if len(set(map(str, ids))) != len(ids) or len(ids) != k:
                    problems.append(f"query {i} exact={exact}: {len(ids)} ids, {len(set(map(str, ids)))} distinct")
                found = score_of(ids, queries[i])
                if found is None:
                    found = np.array([rec["score"] for rec in recs], dtype=np.float32)
                hits = tie_aware_hits(found, kth)
                if exact:
                    exact_hits += hits
                else:
                    ann_hits += hits
            slots += k
        batch_status, batch_body = client.post(
            "/batch",
            ("[" + ",".join(infer_body(f"b{i}", queries[i], k, False) for i in range(batch_probe)) + "]").encode(),
        )
        batch_ok = batch_status == 200 and [item.get("name") for item in batch_body] == [
            f"b{i}" for i in range(batch_probe)
        ]
        if not batch_ok:
            problems.append(f"/batch of {batch_probe}: HTTP {batch_status} {str(batch_body)[:200]}")
    finally:
        client.close()
    return {
        "queries": n,
        "truth": "exact scores computed outside the service" if truth is not None else "the service's exact:true",
        "ann_recall_at_k": round(ann_hits / slots, 4) if slots else None,
        "exact_recall_at_k": round(exact_hits / slots, 4) if slots else None,
        "index_endpoint": info if status == 200 else None,
        "problems": problems[:20],
    }


# ---- wrk -----------------------------------------------------------------------------------------------------


def wrk_command(
    port: int, path: str, bodies: Path, connections: int, threads: int, duration: float, timeout_s: float
) -> list[str]:
    threads = max(1, min(threads, connections))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s"]
    return command + [
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        f"http://{HOST}:{port}",
        "--",
        str(bodies),
        path,
    ]


def run_wrk(
    port: int, path: str, bodies: Path, connections: int, threads: int, duration: float, timeout_s: float
) -> dict[str, Any]:
    """One wrk run; returns req/s, latency percentiles (ms) and errors parsed from rotate.lua's done() line."""
    command = wrk_command(port, path, bodies, connections, threads, duration, timeout_s)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout[-500:]} {completed.stderr[-500:]}")
    return parse_wrk(completed.stdout, path, connections, max(1, min(threads, connections)))


def parse_wrk(stdout: str, path: str, connections: int, threads: int) -> dict[str, Any]:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no WRK_JSON line in wrk's output: {stdout[-500:]}")
    raw = json.loads(line[len("WRK_JSON ") :])
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["errors"]
    return {
        "path": path,
        "concurrency": connections,
        "wrk_threads": threads,
        "seconds": round(seconds, 2),
        "requests": raw["requests"],
        "req_per_s": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "max_ms": lat["max"] / 1000,
        "mean_ms": round(lat["mean"] / 1000, 3),
        "non_2xx": errors["status"],
        "socket_errors": {key: errors[key] for key in ("connect", "read", "write", "timeout")},
        "bytes_read": raw["bytes"],
    }


ScoreFn = Callable[[list[Any], F32], "F32 | None"]


@dataclass
class Served:
    """The index to serve and how to check its answers: queries (the first n_check for the recall check, the rest
    for load), their exact top-k scores (None: use the service's exact:true), and score_of(ids, q), the exact inner
    products of returned ids (None: trust the returned scores)."""

    index_root: Path
    queries: F32
    truth: F32 | None
    score_of: ScoreFn
    tag: str
    items: F32 | None = None  # original rows and ids, for the Flask reference (datasets only)
    ids: npt.NDArray[Any] | None = None


def prepare(args: argparse.Namespace) -> Served:
    """Build or reuse an index of --dataset, or take --index-root; and the queries and truth to check it with."""
    if args.index_root is not None:
        queries, truth, reader = checks_from_index(args.index_root, args.k, args.check_queries)

        def reader_scores(ids: list[Any], q: F32) -> F32 | None:
            if reader.vectors is None:
                return None
            rows = reader.rows_of_ids(ids)
            if (rows < 0).any():
                return np.full(len(ids), -np.inf, dtype=np.float32)
            return np.asarray(reader.vectors[rows] @ q, dtype=np.float32)

        return Served(args.index_root, queries, truth, reader_scores, args.tag or args.index_root.name)
    n, d = args.synthetic[0], args.synthetic[-1]
    dataset = load_dataset(args.dataset, args.data_dir, args.k, args.check_queries, (n, d), seed=0)
    name = args.dataset if args.dataset != "synthetic" else f"synthetic-{n}x{d}"
    if args.kind != "auto" and args.dataset == "synthetic":
        name += f"-{args.kind}"
    root = args.build_root or REPO / "indexes" / "bench" / name
    options = BuildOptions(kind=args.kind, k=args.k, target_recall=args.target_recall)
    build_or_reuse(dataset, root, options, args.rebuild)

    def dataset_scores(ids: list[Any], q: F32) -> F32 | None:
        rows = [dataset.row_of_id.get(i, -1) for i in ids] if dataset.row_of_id else [int(i) for i in ids]
        if min(rows, default=0) < 0:
            return np.full(len(ids), -np.inf, dtype=np.float32)
        return np.asarray(dataset.items[rows] @ q, dtype=np.float32)

    truth = dataset.truth_scores[: args.check_queries]
    ids = np.asarray(dataset.embeddings.ids)
    return Served(root, dataset.load_queries, truth, dataset_scores, args.tag or name, dataset.items, ids)


# ---- the run -------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    workers: list[int]
    concurrency: list[int]
    batch_sizes: list[int]
    batch_concurrency: int  # 0: as many connections as workers
    duration: float
    warmup: float
    wrk_threads: int
    wrk_timeout: float
    k: int
    n_check: int
    ready_timeout: float
    server_args: list[str]
    floor_args: list[str]
    api_launcher: str  # "recsys-serve", or "nodelay": api.app:create_app through floor_app's launcher
    flask_reference: bool  # also load the design this service replaces (benchmarks/flask_reference.py)
    compare_tree: Path | None  # also serve the index with the service code of this source tree (an older commit)
    granian: bool  # also serve the same app under granian (a Rust HTTP server for ASGI) instead of uvicorn
    filter: dict[str, list[str]] | None  # also load /infer with this filter

    def estimated_seconds(self) -> float:
        optional = (self.flask_reference, self.compare_tree is not None, self.filter is not None, self.granian)
        targets = 3 + sum(optional)
        per_workers = len(self.concurrency) * targets + 2 * len(self.batch_sizes)
        return len(self.workers) * (per_workers * (self.duration + 1) + 2 * self.warmup + 20)


def run_workers(plan: Plan, workers: int, served: Served, id_type: str, tmp: Path) -> dict[str, Any]:
    """Start the service and the floor with `workers` workers, check, load every point, stop both."""
    queries = served.queries
    load = queries[plan.n_check :] if queries.shape[0] > plan.n_check + 100 else queries
    bodies = {
        "ann": write_bodies(tmp / "ann.jsonl", load, plan.k, exact=False),
        "exact": write_bodies(tmp / "exact.jsonl", load, plan.k, exact=True),
    }
    if plan.filter is not None:
        bodies["filtered"] = write_bodies(tmp / "filtered.jsonl", load, plan.k, exact=False, filter=plan.filter)
    api_port, floor_port = free_port(), free_port()
    api_env = server_env({"RECSYS_INDEX_ROOT": str(served.index_root)})
    floor_env = server_env()
    run: dict[str, Any] = {"workers": workers, "points": []}
    api_cmd = api_command(served.index_root, api_port, workers, plan.api_launcher, plan.server_args)
    floor_cmd = floor_command(floor_port, workers, plan.k, id_type, plan.floor_args)
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(started(Server("api", api_cmd, api_env, tmp / f"api-{workers}.log", api_port)))
        floor_log = tmp / f"floor-{workers}.log"
        floor = stack.enter_context(started(Server("floor", floor_cmd, floor_env, floor_log, floor_port)))
        run["servers"] = {
            "api": {"pid": api.pid, "port": api.port, "command": api_cmd},
            "floor": {"pid": floor.pid, "port": floor.port, "command": floor_cmd},
        }
        run["api_ready_seconds"] = round(api.wait_ready(workers, plan.ready_timeout), 2)
        floor.wait_ready(workers, 60)
        extra = stack.enter_context(contextlib.ExitStack())
        references = start_references(plan, workers, served, tmp, extra, run)
        run["checks"] = http_checks(api_port, queries, served.truth, plan.k, served.score_of, plan.n_check)
        LOG.info(
            "checks with %d workers: %s", workers, {k: v for k, v in run["checks"].items() if k != "index_endpoint"}
        )
        top = max(plan.concurrency)
        if plan.warmup > 0:
            for port, body in ((floor.port, bodies["ann"]), (api.port, bodies["ann"]), (api.port, bodies["exact"])):
                run_wrk(port, "/infer", body, top, plan.wrk_threads, plan.warmup, plan.wrk_timeout)
        targets = [("floor", floor.port, "/infer", "ann"), ("infer_ann", api.port, "/infer", "ann")]
        targets += [(name, port, "/infer", "ann") for name, port in references]
        targets.append(("infer_exact", api.port, "/infer", "exact"))
        if plan.filter is not None:
            targets.append(("infer_filtered", api.port, "/infer", "filtered"))
        for connections in plan.concurrency:
            for target, port, path, body_key in targets:
                point = run_wrk(
                    port, path, bodies[body_key], connections, plan.wrk_threads, plan.duration, plan.wrk_timeout
                )
                point["target"] = target
                run["points"].append(point)
                _log_point(workers, point)
        batch_connections = plan.batch_concurrency or workers
        for size in plan.batch_sizes:
            for exact in (False, True):
                path_file = write_bodies(tmp / f"batch{size}-{exact}.jsonl", load, plan.k, exact, batch_size=size)
                point = run_wrk(
                    api.port,
                    "/batch",
                    path_file,
                    batch_connections,
                    plan.wrk_threads,
                    plan.duration,
                    max(plan.wrk_timeout, 30.0),
                )
                point.update(
                    target="batch_exact" if exact else "batch_ann",
                    batch_size=size,
                    users_per_s=round(point["req_per_s"] * size, 1),
                )
                run["points"].append(point)
                _log_point(workers, point)
    run["targets"] = evaluate_targets(run["points"])
    return run


def start_references(
    plan: Plan, workers: int, served: Served, tmp: Path, stack: contextlib.ExitStack, run: dict[str, Any]
) -> list[tuple[str, int]]:
    """Start the optional reference servers (the Flask design, the service at another source tree) and wait until
    they answer; (target name, port) of each."""
    out = []
    if plan.flask_reference:
        if served.items is None:
            raise ValueError("--flask-reference needs --dataset (the Flask reference loads the item vectors)")
        items_path, ids_path = tmp / "flask_items.npy", tmp / "flask_ids.npy"
        np.save(items_path, served.items)
        np.save(ids_path, served.ids if served.ids is not None else np.arange(served.items.shape[0]))
        port = free_port()
        cmd = flask_reference.command(str(items_path), str(ids_path), port, 4, plan.k)
        env = server_env(flask_reference.environment(str(items_path), str(ids_path), plan.k))
        flask = stack.enter_context(started(Server("flask", cmd, env, tmp / f"flask-{workers}.log", port)))
        flask.wait_ready(0, 120, ready_path="/readyz")
        run["servers"]["flask"] = {"pid": flask.pid, "port": port, "command": cmd, "workers": 4}
        out.append(("flask_reference", port))
    if plan.compare_tree is not None:
        port = free_port()
        # Run from the other tree (`python -c` puts the working directory first on sys.path), with absolute paths.
        tree = plan.compare_tree.resolve()
        root = compatible_root(tree, served.index_root.resolve(), tmp / "compare-root")
        entry = "import sys; from api.__main__ import main; sys.exit(main())"
        where = ["--host", HOST, "--port", str(port), "--workers", str(workers)]
        cmd = [sys.executable, "-c", entry, "--index-root", str(root), *where, *plan.server_args]
        env = server_env({"RECSYS_INDEX_ROOT": str(root)})
        env["PYTHONPATH"] = str(tree)
        log = tmp / f"compare-{workers}.log"
        base = stack.enter_context(started(Server("compare", cmd, env, log, port, cwd=tree)))
        base.wait_ready(workers, plan.ready_timeout)
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        run["servers"]["compare"] = {"pid": base.pid, "port": port, "tree": str(tree), "commit": commit.strip()}
        out.append(("infer_ann_compare", port))
    if plan.granian:
        port = free_port()
        cmd = granian_command(port, workers, plan.server_args)
        env = server_env({"RECSYS_INDEX_ROOT": str(served.index_root), "RECSYS_WORKERS": str(workers)})
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="granian-metrics-", dir=tmp))
        granian = stack.enter_context(started(Server("granian", cmd, env, tmp / f"granian-{workers}.log", port)))
        granian.wait_ready(0, plan.ready_timeout)
        run["servers"]["granian"] = {"pid": granian.pid, "port": port, "command": cmd}
        out.append(("infer_ann_granian", port))
    return out


def compatible_root(tree: Path, root: Path, target: Path) -> Path:
    """ROOT itself, or, when its manifest holds fields the older tree's `Manifest` does not know, a root serving the
    same files (hard links) with those fields left out (they must be empty: a field in use would change answers)."""
    version = layout.resolve_current(root)
    raw = json.loads((version / layout.MANIFEST).read_text())
    probe = "import dataclasses, json; from index_format.layout import Manifest; "
    probe += "print(json.dumps([f.name for f in dataclasses.fields(Manifest)]))"
    known = json.loads(
        subprocess.run([sys.executable, "-c", probe], cwd=tree, capture_output=True, text=True, check=True).stdout
    )
    newer = [name for name in raw if name not in known]
    if not newer:
        return root
    if any(raw[name] for name in newer):
        raise RuntimeError(f"{tree} cannot serve {version}: its manifest uses fields that tree does not know: {newer}")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(version, target / version.name, copy_function=os.link)
    (target / version.name / layout.MANIFEST).write_text(json.dumps({k: v for k, v in raw.items() if k not in newer}))
    os.symlink(version.name, target / layout.CURRENT_LINK)
    LOG.info("compare tree: serving %s without the manifest fields it does not know (%s, empty)", version, newer)
    return target


def granian_command(port: int, workers: int, server_args: Sequence[str]) -> list[str]:
    """The service's app factory under granian (ASGI, uvloop, no websockets), the same worker count."""
    loop = "asyncio" if "asyncio" in server_args else "uvloop"
    where = ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    head = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", loop, "--no-ws"]
    return [*head, "--log-level", "warning", *where, "api.app:create_app"]


def _log_point(workers: int, point: dict[str, Any]) -> None:
    batch = f" batch {point['batch_size']}" if "batch_size" in point else ""
    LOG.info(
        "w=%d %-11s c=%-3d%s: %8.1f req/s  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  non-2xx %d  socket errors %s",
        workers,
        point["target"],
        point["concurrency"],
        batch,
        point["req_per_s"],
        point["p50_ms"],
        point["p90_ms"],
        point["p99_ms"],
        point["non_2xx"],
        sum(point["socket_errors"].values()),
    )


def evaluate_targets(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The API issue's targets at c=64 (or the highest concurrency measured): ANN ≥ 60% of the floor's req/s, p99
    ≤ 10 ms."""
    infer = [p for p in points if p["target"] in ("floor", "infer_ann")]
    if not infer:
        return {}
    levels = sorted({p["concurrency"] for p in infer})
    at = TARGET_CONCURRENCY if TARGET_CONCURRENCY in levels else levels[-1]
    floor = next(p for p in infer if p["target"] == "floor" and p["concurrency"] == at)
    ann = next(p for p in infer if p["target"] == "infer_ann" and p["concurrency"] == at)
    ratio = ann["req_per_s"] / floor["req_per_s"] if floor["req_per_s"] else 0.0
    return {
        "concurrency": at,
        "ann_over_floor": round(ratio, 3),
        "ann_over_floor_target": TARGET_FLOOR_RATIO,
        "ann_over_floor_met": ratio >= TARGET_FLOOR_RATIO,
        "ann_p99_ms": ann["p99_ms"],
        "p99_target_ms": TARGET_P99_MS,
        "p99_met": ann["p99_ms"] <= TARGET_P99_MS,
    }


# ---- output --------------------------------------------------------------------------------------------------


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        "| workers | target | c | batch | req/s | users/s | p50 ms | p90 ms | p99 ms | non-2xx | socket err |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        for p in run["points"]:
            lines.append(
                f"| {run['workers']} | {p['target']} | {p['concurrency']} | {p.get('batch_size', '')} | "
                f"{p['req_per_s']:,.0f} | {p.get('users_per_s', p['req_per_s']):,.0f} | {p['p50_ms']:.2f} | "
                f"{p['p90_ms']:.2f} | {p['p99_ms']:.2f} | {p['non_2xx']} | {sum(p['socket_errors'].values())} |"
            )
    return "\n".join(lines)


TARGET_STYLE = {
    "floor": "0.15",
    "flask_reference": "0.75",
    "infer_ann_compare": "0.5",
    "infer_ann_granian": "tab:purple",
    "infer_ann": "tab:blue",
    "infer_filtered": "tab:green",
    "infer_exact": "tab:red",
}


def plot(result: dict[str, Any], path: Path) -> None:
    """Three panels: /infer req/s and p50/p99 as bars grouped by (workers, connections); /batch users/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_lat, ax_batch) = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [3, 3, 2]})
    groups = [(run["workers"], c) for run in result["runs"] for c in result["plan"]["concurrency"]]
    present = [t for t in TARGET_STYLE if any(p["target"] == t for run in result["runs"] for p in run["points"])]
    width = 0.8 / max(1, len(present))
    for j, target in enumerate(present):
        xs, rps, p50, p99 = [], [], [], []
        for g, (workers, c) in enumerate(groups):
            run = next(r for r in result["runs"] if r["workers"] == workers)
            point = next((p for p in run["points"] if p["target"] == target and p["concurrency"] == c), None)
            if point is not None:
                xs.append(g + (j - (len(present) - 1) / 2) * width)
                rps.append(point["req_per_s"])
                p50.append(point["p50_ms"])
                p99.append(point["p99_ms"])
        colour = TARGET_STYLE[target]
        ax_rps.bar(xs, rps, width, color=colour, label=target)
        ax_lat.bar(xs, p99, width, color=colour, label=f"{target} p99")
        ax_lat.scatter(xs, p50, color="white", edgecolors="black", zorder=3, s=14)
    ax_lat.axhline(TARGET_P99_MS, color="tab:green", linestyle="--", linewidth=1, label="p99 target (c=64)")
    labels = [f"{w} worker{'s' if w > 1 else ''}\nc={c}" for w, c in groups]
    for ax in (ax_rps, ax_lat):
        ax.set_xticks(range(len(groups)), labels, fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_rps.set_title("POST /infer throughput", fontsize=10)
    ax_rps.set_ylabel("requests/s")
    ax_lat.set_title("POST /infer latency: bars p99, dots p50", fontsize=10)
    ax_lat.set_ylabel("ms")
    ax_lat.set_yscale("log")
    markers = ["o", "s", "^", "D", "v"]
    for n, run in enumerate(result["runs"]):
        for target, colour in (("batch_ann", "tab:blue"), ("batch_exact", "tab:red")):
            pts = sorted((p for p in run["points"] if p["target"] == target), key=lambda p: p["batch_size"])
            if pts:
                ax_batch.plot(
                    [p["batch_size"] for p in pts],
                    [p["users_per_s"] for p in pts],
                    marker=markers[n % len(markers)],
                    color=colour,
                    label=f"{'exact' if 'exact' in target else 'ANN'}, w={run['workers']}",
                )
    ax_batch.set_title("POST /batch, one request in flight per worker", fontsize=10)
    ax_batch.set_xlabel("users per request")
    ax_batch.set_ylabel("users/s")
    ax_batch.set_xscale("log")
    ax_batch.set_yscale("log")
    ax_batch.grid(True, which="both", alpha=0.3)
    if ax_batch.has_data():
        ax_batch.legend(fontsize=7)
    machine = result["machine"]
    index = result["index"]
    fig.suptitle(
        f"{result['tag']}: {index['kind']} {index['default_params']} on {index['count']:,}×{index['dim']} — "
        f"{machine['cores']} cores {machine['cpu_model']}, wrk -t{result['plan']['wrk_threads']} on the same cores, "
        f"{result['plan']['duration']:g}s per point, {machine['date'][:10]}, commit {str(machine['commit'])[:8]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- CLI -----------------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    if text == "none":  # e.g. --batch-sizes none
        return []
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def add_index_source_arguments(p: argparse.ArgumentParser, synthetic_default: list[int]) -> None:
    """The options that say which index to serve: shared by http_load, memory and soak (see `prepare`)."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--index-root", type=Path, help="serve this existing index root (ROOT/current)")
    source.add_argument("--dataset", choices=DATASETS, help="build (or reuse) an index of this dataset")
    p.add_argument("--data-dir", type=Path, help="folder holding gowalla_als/ and instacart_products/")
    p.add_argument("--build-root", type=Path, help="where to build with --dataset (default indexes/bench/<dataset>)")
    p.add_argument("--kind", default="auto", help="index kind to build with --dataset (default auto)")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--rebuild", action="store_true", help="build even if the build root holds a matching index")
    p.add_argument("--synthetic", type=_ints, default=synthetic_default, help="N,D for --dataset synthetic")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http_load", description=__doc__.split("\n\n")[0])
    add_index_source_arguments(p, synthetic_default=[100_000, 64])
    p.add_argument("--workers", type=_ints, default=[2], help="uvicorn worker counts to measure, e.g. 1,2,4")
    p.add_argument("--concurrency", type=_ints, default=[16, 64], help="wrk connections for /infer points")
    p.add_argument(
        "--batch-sizes", type=_ints, default=[1000, 100, 10], help="users per /batch request (none: skip /batch)"
    )
    p.add_argument("--batch-concurrency", type=int, default=0, help="connections for /batch (default: = workers)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per point (wrk -d)")
    p.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds of load before the points")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (wrk shares the machine's cores)")
    p.add_argument("--wrk-timeout", type=float, default=5.0, help="wrk --timeout seconds (later = timeout error)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--check-queries", type=int, default=300, help="queries for the HTTP recall check")
    p.add_argument("--ready-timeout", type=float, default=600.0)
    p.add_argument("--server-arg", action="append", default=[], help="extra recsys-serve argument (repeatable)")
    p.add_argument(
        "--floor-arg", action="append", default=[], help="extra benchmarks.floor_app argument, e.g. --stock-uvicorn"
    )
    p.add_argument(
        "--flask-reference",
        action="store_true",
        help="also load the Flask + numpy design this service replaces (gunicorn, 4 sync workers; bench extra)",
    )
    p.add_argument(
        "--compare-tree",
        type=Path,
        help="also serve the index with the service code of this source tree, e.g. a git worktree of an older commit",
    )
    p.add_argument(
        "--granian", action="store_true", help="also serve the same app under granian (bench extra) for comparison"
    )
    p.add_argument(
        "--filter",
        type=json.loads,
        help='also load /infer with this filter, e.g. \'{"popularity": ["tail"]}\' (gowalla_als has popularity bands)',
    )
    p.add_argument(
        "--http", choices=("auto", "httptools", "h11"), default="auto", help="uvicorn's HTTP parser, both servers"
    )
    p.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="uvicorn's event loop, both servers"
    )
    p.add_argument(
        "--api-launcher",
        choices=("recsys-serve", "nodelay"),
        default="recsys-serve",
        help="nodelay: serve api.app:create_app with TCP_NODELAY on the listening socket (uvicorn issue #3149)",
    )
    p.add_argument("--tag", help="result file name part (default: dataset or index root name)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--no-plot", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if not args.workers or not args.concurrency:
        cli.error("--workers and --concurrency need at least one value")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if shutil.which("wrk") is None:
        print("http_load: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    stack = ["--http", args.http, "--loop", args.loop]  # the same uvicorn implementations for both servers
    plan = Plan(
        workers=args.workers,
        concurrency=args.concurrency,
        batch_sizes=args.batch_sizes,
        batch_concurrency=args.batch_concurrency,
        duration=args.duration,
        warmup=args.warmup,
        wrk_threads=args.wrk_threads,
        wrk_timeout=args.wrk_timeout,
        k=args.k,
        n_check=args.check_queries,
        ready_timeout=args.ready_timeout,
        server_args=[*args.server_arg, *stack],
        floor_args=[*args.floor_arg, *stack],
        api_launcher=args.api_launcher,
        flask_reference=args.flask_reference,
        compare_tree=args.compare_tree,
        granian=args.granian,
        filter=args.filter,
    )
    with sigterm_as_exit():
        served = prepare(args)
        summary = index_summary(served.index_root)
        LOG.info("plan: about %.0f s of load (%s)", plan.estimated_seconds(), plan)
        result: dict[str, Any] = {
            "benchmark": "http",
            "tag": served.tag,
            "command": [sys.executable, "-m", "benchmarks.http_load", *(argv if argv is not None else sys.argv[1:])],
            "machine": machine_info(),
            "plan": plan.__dict__,
            "index": summary,
            "notes": [
                f"wrk -t{plan.wrk_threads} runs on the same {os.cpu_count()} cores as the servers (loopback).",
                "latency is wrk's (measured from send to full response; wrk 4 does not correct coordinated omission)",
                "floor: benchmarks/floor_app.py, same uvicorn and worker count, orjson-parses the body, fixed answer",
            ],
            "runs": [],
        }
        with tempfile.TemporaryDirectory(prefix="http-load-") as tmp:
            for workers in plan.workers:
                result["runs"].append(run_workers(plan, workers, served, summary["id_type"], Path(tmp)))
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"http_{served.tag}.json"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_plot:
        plot(result, args.out / f"http_{served.tag}.png")
    print(markdown_table(result))
    for run in result["runs"]:
        print(
            f"workers={run['workers']}: targets {run['targets']}; checks ann recall "
            f"{run['checks']['ann_recall_at_k']} exact recall {run['checks']['exact_recall_at_k']}"
        )
    print(f"wrote {json_path}")
    failed = any(
        run["checks"]["problems"] or (run["checks"]["exact_recall_at_k"] or 0) < 0.999 for run in result["runs"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
