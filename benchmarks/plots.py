"""PNG plots of benchmark JSON (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.common import frontier

_STYLE = {"ours": "-", "hnswlib": "--", "usearch": ":"}
_COLOURS = [*(f"C{i}" for i in range(10)), "#000000", "#b8860b", "#00ced1", "#ff1493"]


def _caption(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores · {machine['date'][:10]} · commit {machine['commit'][:10]}"
    )


def plot_ann(result: dict[str, Any], path: Path) -> None:
    """Recall@10 vs single-query QPS (log), one line per method (its Pareto frontier); exact kinds are points."""
    data = result["dataset"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, method in enumerate(result["methods"]):
        points = frontier(method["points"])
        xs = [p["recall"] for p in points]
        ys = [p["qps_single"] for p in points]
        style = _STYLE.get(method["library"], "-")
        marker = "*" if method["exact"] else "o"
        colour = _COLOURS[i % len(_COLOURS)]
        size = 9 if method["exact"] else 4
        ax.plot(xs, ys, style, marker=marker, markersize=size, color=colour, label=method["method"])
    target = result["summary"]["target_recall"]
    ax.axvline(target, color="grey", linewidth=0.8, linestyle="-.")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (tie-aware)")
    ax.set_ylabel("single-query QPS, 1 thread (log)")
    lowest = min((p["recall"] for m in result["methods"] for p in m["points"]), default=0.0)
    ax.set_xlim(max(0.0, min(lowest, target) - 0.02), 1.005)
    ax.set_title(f"{data['name']}: {data['n']:,}×{data['d']}, {data['queries']:,} queries, k=10", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.text(0.01, 0.005, _caption(result), fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_recall_vs_param(results: list[dict[str, Any]], kinds: tuple[str, ...], path: Path) -> None:
    """Recall against each kind's search parameter for several datasets (e.g. synthetic vs gowalla_als)."""
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4))
    for ax, kind in zip(axes if len(kinds) > 1 else [axes], kinds, strict=True):
        for result in results:
            method = next((m for m in result["methods"] if m["library"] == "ours" and m["kind"] == kind), None)
            if method is None:
                continue
            points = method["points"]
            if kind == "ivfpq":
                points = [
                    p for p in points if p["params"].get("k_factor") == max(q["params"]["k_factor"] for q in points)
                ]
            name = next(iter(points[0]["params"]))
            ax.plot(
                [p["params"][name] for p in points],
                [p["recall"] for p in points],
                "o-",
                label=result["dataset"]["name"],
            )
            ax.set_xlabel(name if kind != "ivfpq" else f"{name} (k_factor {points[0]['params']['k_factor']})")
        ax.set_xscale("log", base=2)
        ax.set_title(kind)
        ax.set_ylabel("recall@10")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_SCALE_PANELS = (
    ("build_seconds", "build time (s): chosen index, and whole `index-builder build`"),
    ("index_bytes", "index file (bytes)"),
    ("qps_single", "single-query QPS at recall@10 ≥ 0.95"),
    ("p50_ms", "search p50 (ms) at that point"),
)


def plot_scale(result: dict[str, Any], path: Path) -> None:
    """Log–log: each metric against N, one line per (method, d); auto's points are labelled with the kind it chose."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for point in result["points"]:
        series.setdefault((point["method"], point["d"]), []).append(point)
    for ax, (field, label) in zip(axes.ravel(), _SCALE_PANELS, strict=True):
        for index, ((method, d), points) in enumerate(
            sorted(series.items(), key=lambda item: (item[0][0] != "flat", item[0]))
        ):
            colour = f"C{index % 10}"
            points = sorted((p for p in points if (p.get(field) or 0) > 0), key=lambda p: p["n"])
            if not points:
                continue
            xs = [p["n"] for p in points]
            ys = [p[field] for p in points]
            ax.plot(xs, ys, "o-" if method == "flat" else "s--", color=colour, label=f"{method} d={d}")
            if method == "auto":
                for x, y, p in zip(xs, ys, points, strict=True):
                    ax.annotate(p["picked"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            if field == "build_seconds":
                whole = [p["builder_seconds"] for p in points]
                ax.plot(xs, whole, ":", marker="^", color=colour, label=f"{method} d={d}: whole build incl. tuning")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items N")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=6 if field == "build_seconds" else 7, loc="best")
    fig.suptitle("How cost grows with the catalogue (synthetic ALS-like vectors)", fontsize=11)
    fig.text(0.01, 0.005, _caption(result), fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x: ≈1 grows linearly, <1 sub-linearly, ≈-1 falls as 1/N."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pairs) < 2:
        return None
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    var = sum((p[0] - mx) ** 2 for p in pairs)
    return sum((p[0] - mx) * (p[1] - my) for p in pairs) / var if var else None


def main(argv: list[str] | None = None) -> None:
    """Redraw plots from JSON: `python -m benchmarks.plots ann|scale FILE.json`, or
    `python -m benchmarks.plots compare A.json B.json --out PNG` (recall against search parameter)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.plots")
    parser.add_argument("what", choices=("ann", "scale", "compare"))
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="PNG path (default: next to the JSON)")
    parser.add_argument("--kinds", default="hnsw,ivf,ivfpq", help="compare: the kinds to draw")
    args = parser.parse_args(argv)
    results = [json.loads(path.read_text()) for path in args.files]
    out = args.out or args.files[0].with_suffix(".png")
    if args.what == "ann":
        plot_ann(results[0], out)
    elif args.what == "scale":
        plot_scale(results[0], out)
    else:
        plot_recall_vs_param(results, tuple(args.kinds.split(",")), out)
    print(out)


if __name__ == "__main__":
    main()
