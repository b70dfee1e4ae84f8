"""Markdown tables of benchmarks/results/bulk_score_*.json (what benchmarks/README_bulk.md shows). Every figure is a
link to its results file and key (benchmarks/README.md, "Figures in the READMEs"), written for a README in
benchmarks/.

python -m benchmarks.bulk_table benchmarks/results/bulk_score_gowalla_als.json ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def link(shown: str, name: str, key: str) -> str:
    return f'[{shown}](results/{name} "{key}")'


def thousands(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def megabytes(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


def table(result: dict[str, Any], name: str | None = None) -> str:
    """The tables of one results file; `name`: its file name (default: bulk_score_<tag>.json)."""
    name = name or f"bulk_score_{result['tag']}.json"
    index = result["index"]
    params = index["default_params"] or "(exact)"
    repeat = ""
    if result.get("distinct_users", result["users"]) != result["users"]:
        repeat = (
            f" ({result['distinct_users']:,} users scored {result['users'] // result['distinct_users']} times over)"
        )
    trials = f", median of {result['trials']} trials per local row" if result.get("trials", 1) > 1 else ""
    lines = [
        f"**{result['tag']}** ({name}): {result['users']:,} users{repeat}, index {index['kind']} `{index['factory']}` "
        f"{index['count']:,}×{index['dim']} {params} (recall@10 {index['recall_at_k']:.3f}); "
        f"{result['machine']['date']}, commit {result['machine']['commit'][:10]}, load average at start "
        f"{result['machine']['load_average_at_start'][0]:.1f}{trials}",
        "",
        "| engine | processes | mode | users | batch | users/s (scoring) | users/s (wall: start-up, checks included) "
        "| start-up | peak RSS, largest process | peak PSS, all processes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(result["runs"]):
        key, memory = f"runs.{i}", run["peak_memory_bytes"]
        engine = "ray (2 nodes)" if run["engine"] == "ray" else run["engine"]
        spread = ""
        if len(run.get("trials_users_per_s_scoring", [])) > 1:
            low, high = min(run["trials_users_per_s_scoring"]), max(run["trials_users_per_s_scoring"])
            spread = f" ({thousands(low)}–{thousands(high)})"
        startup = f"{run['startup_seconds']:.1f} s" if run["engine"] == "local" else ""
        lines.append(
            f"| {engine} | {run['workers']} | {run['mode']} | {run['users']:,} | {run['batch_size']:,} | "
            f"{link(thousands(run['users_per_s_scoring']), name, key + '.users_per_s_scoring')}{spread} | "
            f"{link(thousands(run['users_per_s_wall']), name, key + '.users_per_s_wall')} | {startup} | "
            f"{link(megabytes(memory['rss_max_process']), name, key + '.peak_memory_bytes.rss_max_process')} | "
            f"{link(megabytes(memory['pss_sum']), name, key + '.peak_memory_bytes.pss_sum')} |"
        )
    for i, point in enumerate(result["http_batch"]):
        lines.append(
            f"| HTTP /batch (recsys-serve, {point['server_workers']} workers, wrk c={point['concurrency']}) | "
            f"{point['server_workers']} | {point['mode']} | {point['users_per_request']:,}/request | | "
            f"{link(thousands(point['users_per_s']), name, f'http_batch.{i}.users_per_s')} | | | | |"
        )
    if result["local2_over_http_batch"]:
        ratios = ", ".join(
            f"{mode} {link(f'{ratio:.2f}×', name, f'local2_over_http_batch.{mode}')}"
            for mode, ratio in result["local2_over_http_batch"].items()
        )
        lines += ["", f"Local engine (2 processes) over the better HTTP /batch point, users/s: {ratios}."]
    rows = result["rss_by_users"]
    if len(rows) > 1:
        order = sorted(range(len(rows)), key=lambda i: rows[i]["users"])
        sizes = "; ".join(
            f"{rows[i]['users']:,} users: "
            f"{link(megabytes(rows[i]['peak_rss_max_process']), name, f'rss_by_users.{i}.peak_rss_max_process')} "
            f"RSS (largest process), "
            f"{link(megabytes(rows[i]['peak_pss_sum']), name, f'rss_by_users.{i}.peak_pss_sum')} PSS (all)"
            for i in order
        )
        lines.append(f"Peak memory by number of users (local, 2 processes, ANN): {sizes}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    print("\n\n".join(table(json.loads(path.read_text()), path.name) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
