"""Memory of the running service: total PSS of its process tree with 1 and 4 workers, against the index's bytes.

    python -m benchmarks.memory --index-root ROOT --workers 1,4
    python -m benchmarks.memory --dataset synthetic --synthetic 1000000,64 --kind pruned --workers 1,4
    python -m benchmarks.memory --dataset gowalla_als --data-dir ../shared/data --workers 1,4

PSS (proportional set size) charges each shared page to the processes mapping it in equal parts, so the sum over the
server's processes is what the machine really spends; RSS counts the shared, memory-mapped index once per worker.
For each worker count the server is started, waited for (every worker loaded and warmed), sampled, put under a few
seconds of /infer load (ANN and exact: exact touches every vector page), sampled again, and stopped. Each sample sums
/proc/PID/smaps_rollup over the supervisor and all its descendants, and also the PSS of the mappings of files in the
index version directory (from /proc/PID/smaps), which separates the index from the per-process Python overhead.
Target (API issue): with 4 workers, total PSS ≤ 1.3 × the index's bytes on disk. Writes memory_<tag>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import http_load
from index_format import layout

LOG = logging.getLogger("benchmarks.memory")

TARGET_RATIO = 1.3
ROLLUP_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean", "Private_Dirty", "Anonymous")


# ---- /proc ---------------------------------------------------------------------------------------------------


def process_tree(root_pid: int) -> list[int]:
    """root_pid and all its descendants (from each process's parent pid in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name may contain spaces and parentheses
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(tree)


def smaps_rollup(pid: int) -> dict[str, int]:
    """The process's memory totals in bytes (kB fields of /proc/PID/smaps_rollup)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[name.strip()] = int(parts[0]) * 1024
    return out


def mapped_pss(pid: int, directory: Path) -> int:
    """PSS in bytes of the process's mappings of files inside `directory` (the memory-mapped index)."""
    prefix = str(directory.resolve()) + os.sep
    total = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:  # a mapping header line
            inside = len(head) == 6 and head[5].startswith(prefix)
        elif inside and line.startswith("Pss:"):
            total += int(line.split()[1]) * 1024
    return total


def sample_tree(root_pid: int, index_dir: Path) -> dict[str, Any]:
    """Totals over the process tree, and each process's share."""
    processes = []
    for pid in process_tree(root_pid):
        with contextlib.suppress(OSError):  # a process may exit between listing and reading
            rollup = smaps_rollup(pid)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            entry: dict[str, Any] = {"pid": pid, "cmd": cmdline.strip()[:160], "index_pss": mapped_pss(pid, index_dir)}
            entry.update({name: rollup.get(name, 0) for name in ROLLUP_FIELDS})
            processes.append(entry)
    totals = {name: sum(p[name] for p in processes) for name in (*ROLLUP_FIELDS, "index_pss")}
    return {"processes": len(processes), "totals": totals, "per_process": processes}


# ---- the measurement -----------------------------------------------------------------------------------------


def measure(
    index_root: Path,
    workers: int,
    launcher: str,
    bodies: dict[str, Path],
    load_seconds: float,
    tmp: Path,
    ready_timeout: float,
) -> dict[str, Any]:
    version_dir = layout.resolve_current(index_root)
    port = http_load.free_port()
    env = http_load.server_env({"RECSYS_INDEX_ROOT": str(index_root)})
    command = http_load.api_command(index_root, port, workers, launcher, [])
    with http_load.started(http_load.Server("api", command, env, tmp / f"api-{workers}.log", port)) as server:
        ready_s = server.wait_ready(workers, ready_timeout)
        time.sleep(1.0)
        after_warm = sample_tree(server.pid, version_dir)
        load = []
        if load_seconds > 0 and shutil.which("wrk"):
            for name, path in bodies.items():
                point = http_load.run_wrk(port, "/infer", path, 4 * workers, 1, load_seconds, 10.0)
                load.append({"bodies": name, "req_per_s": point["req_per_s"], "non_2xx": point["non_2xx"]})
        time.sleep(1.0)
        after_load = sample_tree(server.pid, version_dir)
    return {
        "workers": workers,
        "ready_seconds": round(ready_s, 2),
        "after_warm": after_warm,
        "load": load,
        "after_load": after_load,
    }


def summarise(run: dict[str, Any], disk_bytes: int, index_file_bytes: int) -> dict[str, Any]:
    totals = run["after_load"]["totals"]
    pss = totals["Pss"]
    return {
        "workers": run["workers"],
        "processes": run["after_load"]["processes"],
        "pss_total_mib": round(pss / 2**20, 1),
        "pss_after_warm_mib": round(run["after_warm"]["totals"]["Pss"] / 2**20, 1),
        "rss_total_mib": round(totals["Rss"] / 2**20, 1),
        "index_pss_mib": round(totals["index_pss"] / 2**20, 1),
        "other_pss_mib": round((pss - totals["index_pss"]) / 2**20, 1),
        "pss_anon_mib": round(totals["Pss_Anon"] / 2**20, 1),
        "pss_over_disk_bytes": round(pss / disk_bytes, 3),
        "pss_over_index_file_bytes": round(pss / index_file_bytes, 3),
    }


def markdown_table(result: dict[str, Any]) -> str:
    index = result["index"]
    lines = [
        f"index {index['kind']} {index['count']:,}×{index['dim']}: {index['bytes_on_disk'] / 2**20:.1f} MiB on disk "
        f"({index['index_file_bytes'] / 2**20:.1f} MiB index.faiss)",
        "",
        "| workers | processes | total PSS MiB | of which index MiB | rest MiB | total RSS MiB | PSS / disk bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['workers']} | {s['processes']} | {s['pss_total_mib']} | {s['index_pss_mib']} | "
            f"{s['other_pss_mib']} | {s['rss_total_mib']} | {s['pss_over_disk_bytes']} |"
        )
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    http_load.add_index_source_arguments(p, synthetic_default=[1_000_000, 64])
    p.set_defaults(k=10, check_queries=0)
    p.add_argument("--workers", type=_ints, default=[1, 4])
    p.add_argument("--launcher", choices=("recsys-serve", "nodelay"), default="recsys-serve")
    p.add_argument("--load-seconds", type=float, default=3.0, help="wrk load per body set before the 2nd sample")
    p.add_argument("--ready-timeout", type=float, default=900.0)
    p.add_argument("--tag")
    p.add_argument("--out", type=Path, default=http_load.REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    with http_load.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="memory-") as tmp_name:
        tmp = Path(tmp_name)
        served = http_load.prepare(args)
        index_root, queries, tag = served.index_root, served.queries, served.tag
        bodies = {
            "ann": http_load.write_bodies(tmp / "ann.jsonl", queries, 10, exact=False),
            "exact": http_load.write_bodies(tmp / "exact.jsonl", queries, 10, exact=True),
        }
        index = http_load.index_summary(index_root)
        runs = [
            measure(index_root, w, args.launcher, bodies, args.load_seconds, tmp, args.ready_timeout)
            for w in args.workers
        ]
    summary = [summarise(run, index["bytes_on_disk"], index["index_file_bytes"]) for run in runs]
    four = next((s for s in summary if s["workers"] == 4), None)
    result = {
        "benchmark": "memory",
        "tag": tag,
        "command": [sys.executable, "-m", "benchmarks.memory", *(argv if argv is not None else sys.argv[1:])],
        "machine": http_load.machine_info(),
        "launcher": args.launcher,
        "index": index,
        "target": {
            "rule": f"total PSS with 4 workers ≤ {TARGET_RATIO} × bytes on disk (all files of the version directory)",
            "ratio": four["pss_over_disk_bytes"] if four else None,
            "met": (four["pss_over_disk_bytes"] <= TARGET_RATIO) if four else None,
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"memory_{tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"target: {result['target']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
