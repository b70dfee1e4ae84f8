"""Soak: steady /infer load for a long time (default 10 minutes), with RSS and PSS of the server sampled meanwhile.

    python -m benchmarks.soak --index-root ROOT --workers 2 --concurrency 16 --minutes 10
    python -m benchmarks.soak --dataset gowalla_als --data-dir ../shared/data --minutes 10

One wrk run rotates over real query bodies for the whole duration while the server's process tree (supervisor and
workers) is sampled every --interval seconds from /proc/PID/smaps_rollup. Reports the samples, the PSS growth
(least-squares slope after the first minute, MiB per minute), whether the set of worker processes stayed the same
(a crashed worker restarted by the supervisor shows up as a new pid), and wrk's req/s, latency and errors.
Writes memory_soak_<tag>.json and .png. Run it under `flock /tmp/recsys-bench.lock`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import http_load, memory
from index_format import layout

LOG = logging.getLogger("benchmarks.soak")


def soak(
    index_root: Path,
    bodies: Path,
    workers: int,
    concurrency: int,
    seconds: float,
    interval: float,
    launcher: str,
    tmp: Path,
) -> dict[str, Any]:
    version_dir = layout.resolve_current(index_root)
    port = http_load.free_port()
    env = http_load.server_env({"RECSYS_INDEX_ROOT": str(index_root)})
    command = http_load.api_command(index_root, port, workers, launcher, [])
    samples: list[dict[str, Any]] = []
    with http_load.started(http_load.Server("api", command, env, tmp / "api.log", port)) as server:
        server.wait_ready(workers, 900)
        wrk = http_load.wrk_command(port, "/infer", bodies, concurrency, 1, seconds, 10.0)
        started_at = time.monotonic()
        with open(tmp / "wrk.out", "w+") as out:
            process = subprocess.Popen(wrk, stdout=out, stderr=subprocess.STDOUT)
            try:
                while process.poll() is None:
                    sample = memory.sample_tree(server.pid, version_dir)
                    samples.append(
                        {
                            "t": round(time.monotonic() - started_at, 1),
                            "pids": sorted(p["pid"] for p in sample["per_process"]),
                            **{name: sample["totals"][name] for name in ("Rss", "Pss", "Pss_Anon", "index_pss")},
                        }
                    )
                    LOG.info(
                        "t=%5.0fs  PSS %.1f MiB  RSS %.1f MiB  processes %d",
                        samples[-1]["t"],
                        samples[-1]["Pss"] / 2**20,
                        samples[-1]["Rss"] / 2**20,
                        len(samples[-1]["pids"]),
                    )
                    deadline = time.monotonic() + interval
                    while process.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.5)
                    if time.monotonic() - started_at > seconds + 60:
                        raise TimeoutError("wrk did not finish within a minute of its duration")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            out.seek(0)
            load = http_load.parse_wrk(out.read(), "/infer", concurrency, 1)
        alive = server.process.poll() is None
    return {"samples": samples, "load": load, "server_alive_at_end": alive}


def growth(samples: list[dict[str, Any]], after: float = 60.0) -> dict[str, Any]:
    """PSS and RSS after the first `after` seconds: least-squares slopes (MiB/minute) over that window and over its
    second half (a one-off step, e.g. a lazily imported module, inflates the first but not the second; a leak
    raises both), the range, and first/last values."""
    kept = [s for s in samples if s["t"] >= after] or samples
    out: dict[str, Any] = {"fitted_from_s": after, "samples": len(kept)}
    for name in ("Pss", "Rss"):
        values = np.array([s[name] for s in kept], dtype=np.float64) / 2**20
        minutes = np.array([s["t"] for s in kept], dtype=np.float64) / 60.0
        half = len(kept) // 2
        key = name.lower()
        out[f"{key}_slope_mib_per_min"] = round(_slope(minutes, values), 3)
        out[f"{key}_last_half_slope_mib_per_min"] = round(_slope(minutes[half:], values[half:]), 3)
        out[f"{key}_range_mib"] = round(float(values.max() - values.min()), 1) if len(values) else 0.0
        out[f"{key}_first_mib"] = round(samples[0][name] / 2**20, 1)
        out[f"{key}_last_mib"] = round(samples[-1][name] / 2**20, 1)
    out["worker_pids_stable"] = len({tuple(s["pids"]) for s in samples}) == 1
    return out


def _slope(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 3 else 0.0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, style in (("Pss", "-"), ("Rss", "--"), ("index_pss", ":")):
        ax.plot(t, [s[name] / 2**20 for s in samples], style, marker=".", label=name)
    ax.set_xlabel("minutes under load")
    ax.set_ylabel("MiB (sum over the server's processes)")
    load = result["load"]
    ax.set_title(
        f"soak {result['tag']}: {result['workers']} workers, c={result['concurrency']}, {load['req_per_s']:.0f} req/s, "
        f"p99 {load['p99_ms']:.1f} ms, errors {load['non_2xx'] + sum(load['socket_errors'].values())}",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    http_load.add_index_source_arguments(p, synthetic_default=[100_000, 64])
    p.set_defaults(k=10, check_queries=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between memory samples")
    p.add_argument("--launcher", choices=("recsys-serve", "nodelay"), default="recsys-serve")
    p.add_argument("--tag")
    p.add_argument("--out", type=Path, default=http_load.REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    with http_load.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        served = http_load.prepare(args)
        index_root, queries, tag = served.index_root, served.queries, served.tag
        bodies = http_load.write_bodies(tmp / "bodies.jsonl", queries, 10, exact=False)
        outcome = soak(
            index_root, bodies, args.workers, args.concurrency, args.minutes * 60, args.interval, args.launcher, tmp
        )
    result = {
        "benchmark": "soak",
        "tag": tag,
        "command": [sys.executable, "-m", "benchmarks.soak", *(argv if argv is not None else sys.argv[1:])],
        "machine": http_load.machine_info(),
        "index": http_load.index_summary(index_root),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "launcher": args.launcher,
        "growth": growth(outcome["samples"]),
        **outcome,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"memory_soak_{tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    print(json.dumps({"growth": result["growth"], "load": outcome["load"], "alive": outcome["server_alive_at_end"]}))
    print(f"wrote {path}")
    return 0 if outcome["server_alive_at_end"] and result["growth"]["worker_pids_stable"] else 1


if __name__ == "__main__":
    sys.exit(main())
