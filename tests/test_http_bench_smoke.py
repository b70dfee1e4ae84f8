"""Smoke tests of the HTTP and memory benchmarks, so the scripts cannot rot: a tiny index, 1-second wrk points."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from starlette.exceptions import StarletteDeprecationWarning

# benchmarks/ is not an installed package: make the repo root importable (as tests/test_benchmarks_smoke.py does)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import floor_app, memory
from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings

with warnings.catch_warnings():  # starlette 1.x warns when its TestClient runs on httpx rather than httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent
K = 10


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    vectors = (rng.standard_normal((2000, 16)) * rng.lognormal(0, 0.5, (2000, 1))).astype(np.float32)
    queries = rng.standard_normal((400, 16)).astype(np.float32)
    root = tmp_path_factory.mktemp("http-bench") / "index"
    ids = [f"p{i}" for i in range(2000)]
    build(Embeddings(ids=ids, vectors=vectors, source_name="tiny"), root, queries, BuildOptions(kind="flat"))
    return root


def test_floor_answers_like_the_service() -> None:
    settings = floor_app.FloorSettings(k=K, id_type="str")
    with TestClient(floor_app.create_app(settings)) as client:
        answer = client.post("/infer", json={"name": "mike", "vector": [0.5] * 16})
        assert answer.status_code == 200
        recs = answer.json()["recommendations"]
        assert len(recs) == K and all(isinstance(r["id"], str) and isinstance(r["score"], float) for r in recs)
        assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
        assert (
            client.post("/infer", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        )
        batch = client.post("/batch", json=[{"name": "a", "vector": [1.0]}] * 3)
        assert batch.status_code == 200 and len(batch.json()) == 3


def test_floor_settings_round_trip_through_the_environment() -> None:
    settings = floor_app.FloorSettings(k=3, id_type="str", parse_json=False)
    assert floor_app.FloorSettings.from_env(settings.to_env()) == settings


def test_pss_helpers_see_a_mapped_file(tmp_path: Path) -> None:
    path = tmp_path / "block.npy"
    np.save(path, np.ones((1 << 20,), dtype=np.float32))  # 4 MiB
    mapped = np.load(path, mmap_mode="r")
    assert float(mapped.sum()) == float(1 << 20)  # touches every page
    assert os.getpid() in memory.process_tree(os.getpid())
    rollup = memory.smaps_rollup(os.getpid())
    assert rollup["Pss"] > 0 and rollup["Rss"] >= rollup["Pss"]
    assert memory.mapped_pss(os.getpid(), tmp_path) >= 3 << 20
    del mapped


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk); .ci/run installs it"
)
def test_http_load_runs_end_to_end_and_stops_its_servers(tiny_index: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable, "-m", "benchmarks.http_load", "--index-root", str(tiny_index), "--workers", "1",
        "--concurrency", "2", "--duration", "1", "--warmup", "0", "--batch-sizes", "10", "--check-queries", "50",
        "--tag", "smoke", "--out", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    result = json.loads((out / "http_smoke.json").read_text())
    assert (out / "http_smoke.png").stat().st_size > 10_000
    (run,) = result["runs"]
    # flat is exact: the service's ANN and exact answers must both equal the truth computed outside it
    assert run["checks"]["problems"] == []
    assert run["checks"]["ann_recall_at_k"] == 1.0 and run["checks"]["exact_recall_at_k"] == 1.0
    targets = sorted(point["target"] for point in run["points"])
    assert targets == ["batch_ann", "batch_exact", "floor", "infer_ann", "infer_exact"]
    for point in run["points"]:
        assert point["requests"] > 0 and point["non_2xx"] == 0, point
        assert sum(point["socket_errors"].values()) == 0, point
        assert 0 < point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"] <= point["max_ms"]
    assert {p["batch_size"] for p in run["points"] if p["target"].startswith("batch")} == {10}
    assert set(run["targets"]) >= {"ann_over_floor", "p99_met"}
    assert result["machine"]["cores"] and result["index"]["kind"] == "flat"
    for server in run["servers"].values():  # everything it started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(server["pid"], 0)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", server["port"])) != 0


def test_asgi_cost_measures_every_path(tiny_index: Path, tmp_path: Path) -> None:
    """Run as a process of its own: it switches prometheus_client to multiprocess mode."""
    queries = np.random.default_rng(3).standard_normal((50, 16)).astype(np.float32)
    np.save(tmp_path / "q.npy", queries)
    where = ["--index-root", str(tiny_index), "--queries", str(tmp_path / "q.npy"), "--out", str(tmp_path)]
    command = [sys.executable, "-m", "benchmarks.asgi_cost", *where, "--requests", "30", "--repeats", "1"]
    done = subprocess.run([*command, "--tag", "tiny"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "asgi_cost_tiny.json").read_text())
    assert set(result["us_per_request"]) == {
        "floor_app",
        "service_floor",
        "infer_ann",
        "infer_ann_16_per_turn",
        "infer_exact",
    }
    assert all(value > 0 for value in result["us_per_request"].values())
