"""Markdown tables of benchmarks/results/bulk_score_*.json (what benchmarks/README_bulk.md shows).

python -m benchmarks.bulk_table benchmarks/results/bulk_score_gowalla_als.json ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB = 2**20


def table(result: dict[str, Any]) -> str:
    index = result["index"]
    lines = [
        f"**{result['tag']}**: {result['users']:,} users, index {index['kind']} `{index['factory']}` "
        f"{index['count']:,}×{index['dim']} {index['default_params']} (recall@10 {index['recall_at_k']:.3f}); "
        f"{result['machine']['date']}, commit {result['machine']['commit'][:10]}, load average at start "
        f"{result['machine']['load_average_at_start'][0]:.1f}",
        "",
        "| engine | processes | mode | users | users/s (scoring) | users/s (wall, incl. start-up and checks) | "
        "peak RSS, largest process | peak PSS, all processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        memory = run["peak_memory_bytes"]
        engine = "ray (2 nodes)" if run["engine"] == "ray" else run["engine"]
        lines.append(
            f"| {engine} | {run['workers']} | {run['mode']} | {run['users']:,} | {run['users_per_s_scoring']:,.0f} | "
            f"{run['users_per_s_wall']:,.0f} | {memory['rss_max_process'] / MIB:,.0f} MiB | "
            f"{memory['pss_sum'] / MIB:,.0f} MiB |"
        )
    for point in result["http_batch"]:
        lines.append(
            f"| HTTP /batch (recsys-serve, {point['server_workers']} workers, wrk c={point['concurrency']}) | "
            f"{point['server_workers']} | {point['mode']} | {point['users_per_request']:,}/request | "
            f"{point['users_per_s']:,.0f} | | | |"
        )
    ratios = ", ".join(f"{mode} {ratio}×" for mode, ratio in result["local2_over_http_batch"].items())
    lines += ["", f"Local engine (2 processes) over HTTP /batch, users/s: {ratios}."]
    if len(result["rss_by_users"]) > 1:
        sizes = "; ".join(
            f"{row['users']:,} users: {row['peak_rss_max_process'] / MIB:,.0f} MiB RSS (largest), "
            f"{row['peak_pss_sum'] / MIB:,.0f} MiB PSS (all)"
            for row in sorted(result["rss_by_users"], key=lambda row: row["users"])
        )
        lines.append(f"Peak memory by number of users (local, 2 processes, ANN): {sizes}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    print("\n\n".join(table(json.loads(path.read_text())) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
