"""The bulk-scoring benchmark runs end to end on tiny synthetic data (local engine, no HTTP), so it cannot rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# benchmarks/ is not an installed package: make the repo root importable (as tests/test_benchmarks_smoke.py does)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bulk_score, bulk_table


def test_tiny_synthetic_run(tmp_path: Path) -> None:
    argv = ["--dataset", "synthetic", "--items", "3000", "--users", "2500", "--d", "16", "--engines", "local"]
    argv += ["--workers", "1", "--rss-users", "1000", "--exact-users", "500", "--http-duration", "0"]
    argv += ["--batch-size", "400", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "results")]
    assert bulk_score.main(argv) == 0
    result = json.loads((tmp_path / "results" / "bulk_score_synthetic_3000x16.json").read_text())
    assert [(r["mode"], r["users"]) for r in result["runs"]] == [("ann", 2500), ("exact", 500)]
    assert [row["users"] for row in result["rss_by_users"]] == [1000]  # (the full run counts with 2 processes)
    assert all(r["users_per_s_scoring"] > 0 and r["peak_memory_bytes"]["rss_max_process"] > 0 for r in result["runs"])
    assert "| local | 1 | ann | 2,500 |" in bulk_table.table(result)
