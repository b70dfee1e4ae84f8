"""The README's table for one `benchmarks.ann` result, printed from its JSON (figures are never typed by hand).

python -m benchmarks.ann_table benchmarks/results/ann_gowalla_als.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MIB = 2**20


def _params(params: dict[str, int] | None) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items()) if params else "—"


def table(result: dict[str, Any]) -> str:
    """Heading, machine line and one row per method: its fastest single-query point at the target recall."""
    data, machine, summary = result["dataset"], result["machine"], result["summary"]
    load = machine["load_average_at_start"][0]
    flat = summary["exact_flat_qps_single"]
    lines = [
        f"#### {data['name']} — {data['n']:,}×{data['d']}, {data['queries']:,} queries  ",
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['date']}, commit `{machine['commit'][:12]}`, "
        f"load average at start {load:.2f}",
    ]
    runs = result.get("runs") or []
    if len(runs) > 1:  # a long run measured in parts (`ann --merge`): every part's machine line
        lines += ["", f"Measured in {len(runs)} runs (`--merge`); a method's row says its run when not run 1:", ""]
        for number, run in enumerate(runs, 1):
            part = run["machine"]
            lines.append(
                f"- run {number}: {part['date']}, commit `{part['commit'][:12]}`, load average at start "
                f"{part['load_average_at_start'][0]:.2f}: `{run['command']}`"
            )
    lines += [
        "",
        f"Fastest single-query point at recall@10 ≥ {summary['target_recall']} (exact flat: {flat:,.0f} QPS):",
        "",
        "| method | params | recall@10 | QPS single | × flat | p50 / p99 ms | QPS batch | build s | index MiB "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, method in zip(summary["rows"], result["methods"], strict=True):
        if method.get("run"):
            row = {**row, "method": f"{row['method']} (run {method['run'] + 1})"}
        tail = f"{row['build_seconds']:.2f} | {row['index_bytes'] / MIB:.1f} | {row['peak_rss_bytes'] / MIB:.0f} |"
        if not row["reaches_target"]:
            lines.append(f"| {row['method']} | never reaches (best recall {row['recall']:.4f}) | | | | | | {tail}")
            continue
        lines.append(
            f"| {row['method']} | {_params(row['params'])} | {row['recall']:.4f} | {row['qps_single']:,.0f} | "
            f"{row['x_flat']:.2f} | {row['p50_ms']:.3f} / {row['p99_ms']:.3f} | {row['qps_batch']:,.0f} | {tail}"
        )
    exact = [m for m in result["methods"] if m.get("exact_search")]
    if exact:
        fastest = max(m["exact_search"]["qps_single"] for m in exact)
        lines += [
            "",
            "`exact: true` on each kind (the norm-ordered scan of its raw vectors unless `exact_method` says):",
            "",
            "| kind | exact_method | recall@10 | QPS single | × fastest exact | p50 / p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for method in exact:
            point = method["exact_search"]
            lines.append(
                f"| {method['method'].split(':')[0]} | {method['builder_choice']['exact_method']} | "
                f"{point['recall']:.4f} | {point['qps_single']:,.0f} | {point['qps_single'] / fastest:.2f} | "
                f"{point['p50_ms']:.3f} / {point['p99_ms']:.3f} |"
            )
        # issue 11: `exact: true` within 2x of the fastest exact kind (flat is faiss's scan by definition)
        slow = [
            m["method"].split(":")[0]
            for m in exact
            if m["builder_choice"]["exact_method"] != "faiss_flat" and m["exact_search"]["qps_single"] < fastest / 2
        ]
        lines += [
            "",
            "Every kind whose `exact: true` is the norm-ordered scan answers within 2× of the fastest exact kind: "
            + ("yes." if not slow else f"**no**: {', '.join(slow)}."),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ann_table", description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="results/ann_<dataset>.json files")
    for path in parser.parse_args(argv).results:
        print(table(json.loads(Path(path).read_text())))
        print()


if __name__ == "__main__":
    main()
