"""recsys-score with the local engine: the output equals the Python API user by user, resume after SIGKILL, refusal
to mix index versions or options, bad rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_helpers import Catalogue
from bulk_helpers import assert_matches_api, read_output, users_table, write_users

from bulk_score.__main__ import main
from index_format import Searcher


@pytest.fixture(scope="module")
def searcher(hnsw_root: Path) -> Searcher:
    return Searcher.open(hnsw_root)


def test_ann_with_exclusions_two_workers(
    tmp_path: Path, hnsw_root: Path, searcher: Searcher, str_catalogue: Catalogue
) -> None:
    vectors = str_catalogue.test_queries
    first = searcher.search(vectors, 3)
    exclude = [r.ids[:2] if i % 3 else [] for i, r in enumerate(first)]  # a third of the users exclude nothing
    users = users_table(vectors, exclude)
    source = write_users(tmp_path / "users", users, files=3)
    out = tmp_path / "out"
    code = main(
        [
            str(source),
            "--index-root",
            str(hnsw_root),
            "--out",
            str(out),
            "--k",
            "8",
            "--workers",
            "2",
            "--batch-size",
            "50",
        ]
    )
    assert code == 0
    assert_matches_api(out, searcher, users, 8)
    got = read_output(out)
    for user, dropped in zip(users.column("user_id").to_pylist(), exclude, strict=True):
        assert not set(dropped) & set(got[user][0])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["index_version"] == searcher.version
    assert manifest["counts"] == {"users": 400, "scored": 400, "rejected": 0, "parts": 9}  # 134/133/133 users per file
    assert manifest["options"]["k"] == 8


def test_exact_with_filter_int_ids_npy_input(tmp_path: Path, pruned_root: Path, int_catalogue: Catalogue) -> None:
    searcher = Searcher.open(pruned_root)
    vectors = int_catalogue.test_queries[:120]
    np.save(tmp_path / "users.npy", vectors)
    (tmp_path / "ids.txt").write_text("".join(f"u{i}\n" for i in range(len(vectors))))
    out = tmp_path / "out"
    argv = [str(tmp_path / "users.npy"), "--user-ids", str(tmp_path / "ids.txt"), "--index-root", str(pruned_root)]
    code = main(
        [
            *argv,
            "--out",
            str(out),
            "--k",
            "6",
            "--exact",
            "--filter",
            "category=drinks,bulk",
            "--workers",
            "1",
            "--batch-size",
            "32",
        ]
    )
    assert code == 0
    users = users_table(vectors)
    assert_matches_api(out, searcher, users, 6, exact=True, filter={"category": ["drinks", "bulk"]})
    allowed = {int_catalogue.id_of(row) for row, c in enumerate(int_catalogue.categories) if c in ("drinks", "bulk")}
    assert all(set(ids) <= allowed for ids, _ in read_output(out).values())
    truth_ids, _ = int_catalogue.brute_force(
        vectors[:5], 6, rows=np.array(sorted(int_catalogue.row_of[i] for i in allowed))
    )
    assert [read_output(out)[f"u{i}"][0] for i in range(5)] == truth_ids


def test_bad_rows_fail_the_job_and_write_nothing(
    tmp_path: Path, hnsw_root: Path, str_catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = [list(v) for v in str_catalogue.test_queries[:100].astype(float)]
    vectors[7][3] = float("nan")
    vectors[42] = vectors[42][:15]
    table = pa.table({"user_id": [f"u{i}" for i in range(100)], "vector": vectors})
    source = write_users(tmp_path / "users.parquet", table)
    out = tmp_path / "out"
    argv = [str(source), "--index-root", str(hnsw_root), "--out", str(out), "--workers", "1", "--batch-size", "30"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 bad user rows, nothing written" in err and "user_id 'u7': vector holds NaN or inf" in err
    assert "user_id 'u42': vector of 15 numbers, the index dimension is 16" in err
    assert not out.exists()

    assert main([*argv, "--skip-bad"]) == 0
    rejected = pq.read_table(out / "_rejected.parquet").to_pylist()
    assert [row["user_id"] for row in rejected] == ["u7", "u42"]
    got = read_output(out)
    assert len(got) == 98 and "u7" not in got and "u42" not in got


def test_refuses_to_mix_options_or_index_versions(
    tmp_path: Path, hnsw_root: Path, ivf_root: Path, str_catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_users(tmp_path / "users.parquet", users_table(str_catalogue.test_queries[:60]))
    out = tmp_path / "out"
    argv = [str(source), "--out", str(out), "--workers", "1", "--batch-size", "20"]
    assert main([*argv, "--index-root", str(hnsw_root)]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("part-*")}
    assert main([*argv, "--index-root", str(hnsw_root), "--k", "5"]) == 2
    assert "holds results for a different options" in capsys.readouterr().err
    assert main([*argv, "--index-root", str(ivf_root)]) == 2
    assert "holds results for a different index_version" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.glob("part-*")} == before
    assert main([*argv, "--index-root", str(hnsw_root), "--filter", "colour=red"]) == 2
    assert "unknown field 'colour'" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    assert main([str(source), "--out", str(tmp_path / "other"), "--index-root", str(hnsw_root)]) == 2
    assert "is not a recsys-score output" in capsys.readouterr().err


def _run(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bulk_score", *argv]
    with open(log, "wb") as stderr:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def test_resume_after_sigkill_gives_the_same_dataset(tmp_path: Path, hnsw_root: Path, str_catalogue: Catalogue) -> None:
    rng = np.random.default_rng(5)
    base = str_catalogue.test_queries
    vectors = (base[rng.integers(0, len(base), 30_000)] + 0.1 * rng.standard_normal((30_000, 16))).astype(np.float32)
    source = write_users(tmp_path / "users.parquet", users_table(vectors))
    common = [str(source), "--index-root", str(hnsw_root), "--workers", "1", "--batch-size", "200", "--k", "5"]

    log = tmp_path / "stderr.log"
    whole = _run([*common, "--out", str(tmp_path / "whole")], log)
    assert whole.wait(timeout=300) == 0, log.read_text()

    out = tmp_path / "killed"
    job = _run([*common, "--out", str(out)], log)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 20 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    assert job.poll() is None, "the job finished before it could be killed: give it more users"
    os.killpg(job.pid, signal.SIGKILL)  # the job: its driver and its worker processes
    job.wait()
    written = len(list(out.glob("part-*.parquet")))
    assert 20 <= written < 150

    resumed = _run([*common, "--out", str(out)], log)
    assert resumed.wait(timeout=300) == 0, log.read_text()
    expected = sorted(p.name for p in (tmp_path / "whole").glob("part-*.parquet"))
    assert sorted(p.name for p in out.glob("part-*.parquet")) == expected and len(expected) == 150
    for name in expected:
        assert pq.read_table(out / name).equals(pq.read_table(tmp_path / "whole" / name)), name
    assert not list(out.glob(".*tmp*"))
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["runs"] == 2 and manifest["counts"]["scored"] == 30_000
    assert manifest["timings"]["users_scored_this_run"] == 30_000 - 200 * written


@pytest.mark.parametrize(
    ("exact", "filter", "k"),
    [(False, {}, 10), (True, {}, 10), (False, {"category": ["drinks", "bulk"]}, 7), (True, {"category": ["bulk"]}, 15)],
    ids=["ann", "exact", "ann-filter", "exact-filter-fewer-than-k"],
)
def test_vectorised_chunk_equals_the_api(
    ivf_root: Path, str_catalogue: Catalogue, exact: bool, filter: dict[str, list[str]], k: int
) -> None:
    """A chunk without exclusions is answered from one plan's result matrix (bulk_score.scoring.shared_plan_hits),
    padding dropped: the same ids and scores as `Searcher.search`, user by user."""
    from bulk_score.scoring import ScoreOptions, score_chunk, shared_plan_hits
    from bulk_score.users import Chunk

    searcher = Searcher.open(ivf_root)
    vectors = str_catalogue.test_queries[:150]
    options = ScoreOptions(k=k, exact=exact, filter=filter)
    assert shared_plan_hits(searcher, options, vectors) is not None  # the vectorised path answers this chunk
    users = users_table(vectors)
    table = score_chunk(
        searcher,
        options,
        Chunk("", users.column("user_id").combine_chunks(), users.column("vector").combine_chunks(), None),
    )
    expected = searcher.search(vectors, k, exact=exact, filter=filter or None)
    assert table.column("item_ids").to_pylist() == [r.ids for r in expected]
    assert table.column("scores").to_pylist() == [r.scores.tolist() for r in expected]
    if filter == {"category": ["bulk"]}:
        assert all(len(r.ids) < k for r in expected)  # 12 items qualify: fewer than k, and no padding


def test_hidden_and_added_products_are_scored_as_the_service_answers(
    tmp_path: Path, pruned_root: Path, int_catalogue: Catalogue
) -> None:
    """A root with products added (`index-builder add`) and 1% hidden, among them some users' best products: the
    output equals the Python API user by user, holds no hidden product, and holds added ones."""
    import shutil

    from index_builder.__main__ import main as builder_main
    from index_format import availability

    root = tmp_path / "root"
    shutil.copytree(pruned_root, root, symlinks=True)
    rng = np.random.default_rng(4)
    picked = rng.choice(len(int_catalogue.vectors), 40, replace=False)
    added = (int_catalogue.vectors[picked] * 1.1).astype(np.float32)
    added_ids = [10**9 + i for i in range(len(picked))]
    np.save(tmp_path / "new.npy", added)
    np.save(tmp_path / "new_ids.npy", np.array(added_ids, dtype=np.int64))
    assert builder_main(["add", str(root), str(tmp_path / "new.npy"), "--ids", str(tmp_path / "new_ids.npy")]) == 0
    vectors = int_catalogue.test_queries[:80]
    best, _ = int_catalogue.brute_force(vectors[:10], 1)
    hidden = list({*(ids[0] for ids in best), *(int_catalogue.id_of(int(r)) for r in rng.choice(3000, 20))})
    assert len(hidden) <= 0.05 * len(int_catalogue.vectors)  # hidden rows dropped from a widened fetch
    availability.change(root, hide=hidden)
    users = users_table(vectors)
    out = tmp_path / "out"
    code = main(
        [str(write_users(tmp_path / "users.parquet", users)), "--index-root", str(root), "--out", str(out)]
        + ["--k", "10", "--workers", "1", "--batch-size", "32"]
    )
    assert code == 0
    assert_matches_api(out, Searcher.open(root), users, 10)
    answered = {item for ids, _ in read_output(out).values() for item in ids}
    assert not answered & set(hidden)
    assert answered & set(added_ids)
