"""What every benchmark records: the machine, date and commit; timing of single and batched queries; peak memory;
tie-aware recall; JSON written atomically."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_builder.tuning import tie_aware_recall

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

K = 10


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(repo: Path) -> str:
    """HEAD commit, with "+dirty" when tracked files differ from it (the lead commits later)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=repo, capture_output=True).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    try:
        with open("/proc/meminfo") as handle:
            mem_total = int(handle.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        mem_total = 0
    versions: dict[str, str] = {"faiss": faiss.__version__, "numpy": np.__version__}
    for name in ("hnswlib", "usearch", "scann"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # a missing optional package is recorded as absent
            versions[name] = "absent"
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_bytes": mem_total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(Path(__file__).resolve().parent.parent),
        "versions": versions,
        "load_average_at_start": list(os.getloadavg()),
    }


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False, default=_json_default))
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def set_search_threads(count: int) -> None:
    """faiss OpenMP threads for searches made from this thread (the setting is per calling thread)."""
    faiss.omp_set_num_threads(count)


def recall_at_k(items: F32, xq: F32, found: I64, true_scores: F32, k: int = K) -> float:
    """Tie-aware recall@k; `found` are row indices into `items` (-1 = no result)."""
    return tie_aware_recall(items, xq, found, true_scores, k)


def time_single(
    search_one: Callable[[F32], Any], xq: F32, min_queries: int = 100, budget_s: float = 2.0
) -> dict[str, float]:
    """One query per call on this thread, over the queries in order until `budget_s` has passed (at least
    `min_queries`, at most all). QPS = queries / total time; p50/p99 from each call's latency."""
    search_one(xq[:1])  # first-touch costs are not what a warm server pays
    latencies = []
    started = time.perf_counter()
    for i in range(xq.shape[0]):
        t0 = time.perf_counter()
        search_one(xq[i : i + 1])
        latencies.append(time.perf_counter() - t0)
        if i + 1 >= min_queries and time.perf_counter() - started > budget_s:
            break
    total = time.perf_counter() - started
    lat = np.array(latencies) * 1000.0
    return {
        "qps_single": len(latencies) / total,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "timed_queries": len(latencies),
    }


def frontier(points: list[dict[str, Any]], x: str = "recall", y: str = "qps_single") -> list[dict[str, Any]]:
    """Pareto-optimal points (no other point has both higher x and higher y), by increasing x."""
    best: list[dict[str, Any]] = []
    for point in sorted(points, key=lambda p: (-p[x], -p[y])):
        if not best or point[y] > best[-1][y]:
            best.append(point)
    return best[::-1]


def best_at_recall(points: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The fastest single-query point whose recall reaches `target`."""
    reaching = [p for p in points if p["recall"] >= target]
    return max(reaching, key=lambda p: p["qps_single"]) if reaching else None


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
