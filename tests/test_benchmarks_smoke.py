"""`make bench-smoke`: the ann and scale benchmarks run end to end on tiny synthetic data, so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# benchmarks/ is not an installed package: make the repo root importable (spawned workers inherit sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import ann, ann_table, scale, synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# the reference libraries are dev extras; without them the references are left out and their test is skipped
REFS = [name for name in ("hnswlib", "usearch", "scann") if importlib.util.find_spec(name) is not None]
GRAPH_REFS = [name for name in REFS if name != "scann"]  # one build per --ref-builds setting; scann builds once


@pytest.fixture(scope="module")
def ann_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("ann")
    argv = [
        "--dataset=synthetic",
        "--n=2000",
        "--d=16",
        "--queries=100",
        "--kinds=flat,pruned,hnsw,ivf",
        f"--refs={','.join(REFS)}",
        "--ref-builds=8:40",
        "--budget=0.05",
        "--builder-tune-queries=50",
        "--build-threads=1",
        f"--out={out}",
        f"--work-dir={out}",
    ]
    ann.run(ann.parse_args(argv))
    return json.loads((out / "ann_synthetic_2000x16.json").read_text()), out


def test_ann_writes_json_and_plot(ann_result: tuple[dict[str, Any], Path]) -> None:
    result, out = ann_result
    assert (out / "ann_synthetic_2000x16.png").read_bytes()[:8] == PNG_MAGIC
    assert result["dataset"]["n"] == 2000 and result["dataset"]["d"] == 16 and result["dataset"]["queries"] == 100
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["commit"] and machine["date"]
    assert [m["method"].split(":")[0] for m in result["methods"]][:4] == ["flat", "pruned", "hnsw", "ivf"]
    assert [m["method"] for m in result["methods"]][4 : 4 + len(GRAPH_REFS)] == [f"{n} M=8 efC=40" for n in GRAPH_REFS]
    assert [m["library"] for m in result["methods"]][4 + len(GRAPH_REFS) :] == (["scann"] if "scann" in REFS else [])
    # nothing was left in the scratch folder (indexes are built in a temporary directory)
    assert sorted(p.name for p in out.iterdir()) == ["ann_synthetic_2000x16.json", "ann_synthetic_2000x16.png"]


def test_ann_points_are_plausible(ann_result: tuple[dict[str, Any], Path]) -> None:
    result, _ = ann_result
    for method in result["methods"]:
        assert method["points"], method["method"]
        for point in method["points"]:
            assert 0.0 <= point["recall"] <= 1.0
            assert point["qps_single"] > 0 and point["qps_batch"] > 0
            assert 0 < point["p50_ms"] <= point["p99_ms"]
            assert point["timed_queries"] >= 100
        assert method["build"]["index_bytes"] > 0 and method["build"]["index_seconds"] >= 0
        memory = method["memory"]
        assert memory["baseline_rss_bytes"] <= memory["peak_rss_after_build_bytes"] <= memory["peak_rss_bytes"]
    by_kind = {m["method"].split(":")[0]: m for m in result["methods"]}
    # exact kinds are exact; IVF probing every list is exact; graphs get close on 2,000 items
    assert [p["recall"] for p in by_kind["flat"]["points"]] == [1.0]
    assert [p["recall"] for p in by_kind["pruned"]["points"]] == [1.0]
    assert max(p["recall"] for p in by_kind["ivf"]["points"]) >= 0.999
    scann_names = [m["method"] for m in result["methods"] if m["library"] == "scann"]
    for name in ["hnsw", *(f"{name} M=8 efC=40" for name in GRAPH_REFS), *scann_names]:
        recalls = [p["recall"] for p in by_kind[name]["points"]]
        assert max(recalls) >= 0.9, (name, recalls)
        assert recalls[-1] >= recalls[0], (name, recalls)  # more search effort never loses much
    summary = result["summary"]
    assert summary["exact_flat_qps_single"] == by_kind["flat"]["points"][0]["qps_single"]
    flat_row = next(r for r in summary["rows"] if r["method"].startswith("flat"))
    assert flat_row["x_flat"] == 1.0 and flat_row["reaches_target"]


def test_ann_table_has_a_row_per_method(ann_result: tuple[dict[str, Any], Path]) -> None:
    result, _ = ann_result
    lines = ann_table.table(result).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| method", "| kind"))]
    ours = [m for m in result["methods"] if m["library"] == "ours"]
    assert len(rows) == len(result["methods"]) + len(ours)  # one row per method, one per kind's `exact: true`
    assert rows[0].startswith("| flat: Flat exact | — | 1.0000 |") and "| 1.00 |" in rows[0]
    ours = [m for m in result["methods"] if m["library"] == "ours"]
    assert all(m["exact_search"]["recall"] == 1.0 for m in ours)  # `exact: true` on every kind is exact
    assert "| ivf | norm_scan | 1.0000 |" in ann_table.table(result)


@pytest.mark.parametrize("library", ["hnswlib", "usearch", "scann"])
def test_reference_library_was_measured(ann_result: tuple[dict[str, Any], Path], library: str) -> None:
    pytest.importorskip(library)
    result, _ = ann_result
    method = next(m for m in result["methods"] if m["library"] == library)
    assert method["build"]["index_bytes"] > 0 and len(method["points"]) >= 3
    assert max(p["recall"] for p in method["points"]) >= 0.9


def test_scale_runs_and_resumes(tmp_path: Path) -> None:
    argv = [
        "--sizes=1500,3000",
        "--dims=8",
        "--queries=60",
        "--budget=0.05",
        "--builder-tune-queries=50",
        "--build-threads=1",
        "--auto-kinds=pruned,flat,hnsw",
        f"--out={tmp_path}",
        f"--work-dir={tmp_path}",
    ]
    result = scale.run(scale.parse_args(argv))
    assert (tmp_path / "scale.png").read_bytes()[:8] == PNG_MAGIC
    points = {(p["n"], p["method"]): p for p in result["points"]}
    assert sorted(points) == [(1500, "auto"), (1500, "flat"), (3000, "auto"), (3000, "flat")]
    for (n, method), point in points.items():
        assert point["d"] == 8 and point["index_bytes"] >= n * 8 * 4
        assert point["qps_single"] > 0 and 0 < point["p50_ms"] <= point["p99_ms"]
        if method == "flat":
            assert point["picked"] == "flat" and point["recall"] == 1.0
        else:
            assert point["picked"] in ("pruned", "flat", "hnsw") and point["auto_kinds"] == ["pruned", "flat", "hnsw"]
            assert point["recall"] >= 0.95 or not point["reaches_target"]
    assert set(result["slopes"]) == {"flat d=8", "auto d=8"}
    assert result["generator"]["norm_spread"]["3000x8"]["p99_over_median"] > 1.5
    # a second run measures nothing new: every point is already in the JSON
    again = scale.run(scale.parse_args(argv))
    assert len(again["points"]) == 4 and len(again["runs"]) == 2
    assert [p["measured_at"] for p in again["points"]] == [p["measured_at"] for p in result["points"]]


def test_synthetic_is_seeded_and_heavy_tailed() -> None:
    spec = synthetic.SyntheticSpec(n=5000, d=32, n_queries=200, seed=3)
    items = synthetic.generate_items(spec)
    assert items.dtype == np.float32 and items.shape == (5000, 32)
    np.testing.assert_array_equal(items, synthetic.generate_items(spec))
    filled = np.zeros_like(items)
    synthetic.generate_items(spec, out=filled)
    np.testing.assert_array_equal(items, filled)
    assert not np.array_equal(items, synthetic.generate_items(synthetic.SyntheticSpec(n=5000, d=32, seed=4)))
    spread = synthetic.norm_spread(items)
    assert 2.5 < spread["p99_over_median"] < 6.0 and spread["max_over_min"] > 50
    queries = synthetic.generate_queries(spec)
    assert queries.shape == (200, 32)
    # queries are not items: the best cosine of a query with any item stays well below 1
    unit_items = items / np.linalg.norm(items, axis=1, keepdims=True)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    assert float((unit_queries @ unit_items.T).max()) < 0.99
    assert not np.array_equal(queries, synthetic.generate_queries(spec, stream=1))
