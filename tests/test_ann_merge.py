"""benchmarks.ann --merge (a long run measured in parts) and the table it prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# benchmarks/ is not an installed package: make the repo root importable
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import ann, ann_table


def method(library: str, kind: str | None, qps: float, exact_qps: float | None = None, **job: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "method": f"{kind or library}: x",
        "library": library,
        "kind": kind,
        "job": {"library": library, **({"kind": kind} if kind else {}), **job},
        "build": {"index_seconds": 1.0, "index_bytes": 2**20},
        "memory": {"peak_rss_bytes": 2**27},
        "points": [{"params": {}, "recall": 1.0, "qps_single": qps, "p50_ms": 0.1, "p99_ms": 0.2, "qps_batch": qps}],
    }
    if exact_qps is not None:
        record["exact_search"] = {"recall": 1.0, "qps_single": exact_qps, "p50_ms": 0.1, "p99_ms": 0.2}
        record["builder_choice"] = {"exact_method": "faiss_flat" if kind == "flat" else "norm_scan"}
    return record


def machine(date: str) -> dict[str, Any]:
    return {"date": date, "commit": "abc", "load_average_at_start": [1.0], "cpu_model": "cpu", "cores": 2}


def dataset() -> ann.Dataset:
    xq = np.zeros((3, 4), np.float32)
    return ann.Dataset("synthetic_8x4", np.zeros((8, 4), np.float32), xq, xq, None, {})


def test_merge_replaces_methods_measured_again_and_keeps_the_others_with_their_run() -> None:
    first = [method("ours", "flat", 10.0, 10.0), method("ours", "pruned", 120.0, 120.0), method("scann", None, 50.0)]
    previous = {
        "dataset": {"name": "synthetic_8x4", "queries": 3},
        "machine": machine("d1"),
        "settings": {"command": "python -m benchmarks.ann --kinds flat,pruned"},
        "methods": first,
    }
    again = [method("scann", None, 60.0), method("hnswlib", None, 70.0, M=32, ef_construction=100)]
    run = {"machine": machine("d2"), "command": "python -m benchmarks.ann --kinds '' --refs scann,hnswlib"}
    methods, runs = ann._merged(previous, dataset(), again, run)
    assert [m["method"] for m in methods] == ["flat: x", "pruned: x", "scann: x", "hnswlib: x"]
    assert [m["run"] for m in methods] == [0, 0, 1, 1]
    assert methods[2]["points"][0]["qps_single"] == 60.0  # re-measured
    assert [r["machine"]["date"] for r in runs] == ["d1", "d2"]

    result = {
        "dataset": {"name": "synthetic_8x4", "n": 8, "d": 4, "queries": 3},
        "machine": runs[0]["machine"],
        "runs": runs,
        "methods": methods,
        "summary": ann.summarise(methods, 0.95),
    }
    text = ann_table.table(result)
    assert "Measured in 2 runs" in text and "- run 2: d2" in text
    assert "| scann: x (run 2) |" in text and "| pruned: x |" in text
    assert "within 2× of the fastest exact kind: yes." in text


def test_merge_refuses_another_dataset() -> None:
    previous = {"dataset": {"name": "gowalla_als", "queries": 3}, "machine": machine("d1"), "methods": []}
    with pytest.raises(SystemExit):
        ann._merged(previous, dataset(), [], {"machine": machine("d2"), "command": ""})
