"""recsys-score --engine ray on a real two-node Ray cluster started on this machine (`ray start --head` plus
`ray start --address`, one CPU each), through --ray-address: the output equals the Python API user by user."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_helpers import Catalogue
from bulk_helpers import assert_matches_api, read_output, users_table, write_users

from index_format import Searcher

# benchmarks/ is not an installed package: make the repo root importable (as tests/test_benchmarks_smoke.py does)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ray_local import ENV as RAY_ENV
from benchmarks.ray_local import LocalRayCluster, alive_nodes

pytest.importorskip("ray", reason="ray is not installed (pip install '.[ray]')")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """Two Ray nodes of one CPU each on this machine, stopped (by pid) after the module's tests."""
    with LocalRayCluster(nodes=2, cpus=1) as cluster:
        assert alive_nodes(cluster.address) == 2
        yield cluster.address


def _score(arguments: list[str], log: Path) -> int:
    with open(log, "wb") as err:
        command = [sys.executable, "-m", "bulk_score", *arguments, "--engine", "ray"]
        return subprocess.run(command, env=RAY_ENV, stdout=subprocess.DEVNULL, stderr=err, timeout=600).returncode


def test_two_node_cluster_output_equals_the_python_api(
    tmp_path: Path, ray_cluster: str, hnsw_root: Path, str_catalogue: Catalogue
) -> None:
    searcher = Searcher.open(hnsw_root)
    vectors = str_catalogue.test_queries[:300]
    first = searcher.search(vectors, 2)
    exclude = [r.ids if i % 2 else [] for i, r in enumerate(first)]
    users = users_table(vectors, exclude)
    bad_vectors = users.column("vector").to_pylist()
    bad_vectors[5][0] = float("nan")
    with_bad = users.set_column(1, "vector", pa.array(bad_vectors, type=pa.list_(pa.float32())))
    source = write_users(tmp_path / "users", with_bad, files=3)
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    arguments = [str(source), "--index-root", str(hnsw_root), "--out", str(out), "--k", "6"]
    arguments += ["--filter", "category=drinks,produce", "--ray-address", ray_cluster, "--workers", "2"]
    arguments += ["--batch-size", "40", "--skip-bad"]
    assert _score(arguments, log) == 0, log.read_text()[-3000:]

    good = np.ones(300, dtype=bool)
    good[5] = False
    assert pq.read_table(out / "_rejected.parquet").column("user_id").to_pylist() == ["u5"]
    assert_matches_api(out, searcher, users.filter(pa.array(good)), 6, filter={"category": ["drinks", "produce"]})
    allowed = {str_catalogue.id_of(r) for r, c in enumerate(str_catalogue.categories) if c in ("drinks", "produce")}
    assert all(set(ids) <= allowed for ids, _ in read_output(out).values())
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["counts"] == {"users": 300, "scored": 299, "rejected": 1, "parts": manifest["counts"]["parts"]}

    # A re-run finds every input file committed and scores nothing; a killed run's leftovers are discarded.
    before = read_output(out)
    (out / ".ray-staging-00000-00003").mkdir()
    pq.write_table(pq.read_table(next(out.glob("part-r*.parquet"))), out / "part-r00007-00001-00000.parquet")
    assert _score(arguments, log) == 0, log.read_text()[-3000:]
    assert read_output(out) == before
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["runs"] == 2 and manifest["timings"]["users_scored_this_run"] == 0
