"""What `auto` publishes, before and after a change, measured in one run: the default build command
(`index-builder build ITEMS --queries Q --out ROOT`) from an older source tree and from this checkout, on the shared
sets; then both published indexes are searched with their default params on the builder's held-out queries (the
same rows for both: same seed, same split) for tie-aware recall@10, and timed in interleaved rounds (single query,
one thread, median and spread over rounds) so that both see the same machine.

    python -m benchmarks.auto_compare --before /tmp/before --data-dir ../shared/data --glove-items /tmp/glove/items.npy
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks import common
from benchmarks.build_scale import run_builder
from index_builder import race
from index_builder.build import TUNING_QUERIES_FILE
from index_builder.tuning import exact_topk
from index_format import layout
from index_format.reader import IndexReader

ROUNDS = 7
ROUND_SECONDS = 0.5


def datasets(data: Path, glove_items: Path | None) -> dict[str, tuple[Path, Path]]:
    found = {
        "gowalla_als": (data / "gowalla_als/items.npy", data / "gowalla_als/queries.npy"),
        "instacart_products": (data / "instacart_products/items.npy", data / "instacart_products/queries_heldout.npy"),
    }
    if glove_items is not None:
        found["glove6b50"] = (glove_items, data / "glove6b50/queries.npy")
    return {name: paths for name, paths in found.items() if paths[0].exists() and paths[1].exists()}


def measure(roots: dict[str, Path], items: Path) -> dict[str, dict[str, Any]]:
    """Recall and interleaved single-query QPS of each root's current version, on the held-out queries. Rows are
    mapped back to the input's rows through the index's ids (row numbers: the builds get no --ids)."""
    all_items = np.load(items)
    readers = {tag: IndexReader.open(layout.resolve_current(root)) for tag, root in roots.items()}
    first = next(iter(readers.values()))
    heldout = np.load(first.version_dir / TUNING_QUERIES_FILE)[: first.manifest.tuning["n_heldout"]]
    out: dict[str, dict[str, Any]] = {}
    entrants = []
    for tag, reader in readers.items():
        reader.warm()
        vectors = np.ascontiguousarray(all_items[np.asarray(reader.ids)], dtype=np.float32)
        true_scores, _ = exact_topk(vectors, heldout, common.K)
        found = reader.search(heldout, common.K).rows
        recall = common.recall_at_k(vectors, heldout, found, true_scores)
        manifest = reader.manifest
        out[tag] = {
            "kind": manifest.kind,
            "params": manifest.default_params,
            "recall_heldout_remeasured": round(recall, 4),
            "recall_in_manifest": manifest.recall_at_k,
            "builder_qps": next(
                (c.get("qps_single") for c in manifest.tuning.get("candidates", []) if c["kind"] == manifest.kind), None
            ),
        }
        entrants.append(race.Entrant(tag, False, _searcher(reader)))
    faiss.omp_set_num_threads(1)
    race.run_rounds(entrants, heldout, ROUNDS, ROUND_SECONDS)
    for entrant in entrants:
        out[entrant.name].update(entrant.summary())
    return out


def _searcher(reader: IndexReader) -> Any:
    return lambda q: reader.search(q, common.K)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.auto_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree of the older builder")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--glove-items", type=Path, help="items.npy regenerated per ../shared/data/glove6b50/README.md")
    parser.add_argument("--only", help="comma-separated dataset names")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/auto_compare"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    path = args.out / "auto_compare.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"datasets": {}}
    result["machine"] = common.machine_info()
    result["how"] = __doc__
    for name, (items, queries) in datasets(args.data_dir, args.glove_items).items():
        if args.only and name not in args.only.split(","):
            continue
        entry: dict[str, Any] = {"items": str(items), "queries": str(queries), "builds": {}}
        roots = {}
        for tag, code in (("before", args.before.resolve()), ("after", None)):
            root = args.work_dir / f"{name}_{tag}"
            shutil.rmtree(root, ignore_errors=True)
            print(f"== {name}: {tag}", file=sys.stderr, flush=True)
            run = run_builder(items.resolve(), queries.resolve(), root.resolve(), code, 0)
            entry["builds"][tag] = {key: run[key] for key in ("command", "wall_seconds", "peak_rss_bytes", "stages")}
            roots[tag] = root
        entry["published"] = measure(roots, items)
        result["datasets"][name] = entry
        common.write_json(path, result)
        for tag in roots:
            p, b = entry["published"][tag], entry["builds"][tag]
            print(
                f"{name} {tag}: {p['kind']} {p['params']} recall {p['recall_heldout_remeasured']} "
                f"QPS {p['qps_median']} ±{p['qps_spread']:.0%}, build {b['wall_seconds']} s",
                file=sys.stderr,
            )
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
