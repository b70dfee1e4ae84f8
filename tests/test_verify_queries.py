"""`index-builder verify ROOT --queries FILE [--k K]`: recall and QPS on any query file, nothing changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from live_recall_helpers import true_recall
from test_live_recall import catalogue, shifted

from index_builder.__main__ import main
from index_format import layout
from index_format.reader import IndexReader


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("verify")
    items, ids, tune = catalogue(7)
    np.save(folder / "items.npy", items)
    (folder / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    np.save(folder / "tune.npy", tune)
    np.save(folder / "shifted.npy", shifted(3, 300))
    root = folder / "root"
    args = ["build", str(folder / "items.npy"), "--ids", str(folder / "ids.txt"), "--out", str(root), "--quiet"]
    assert main([*args, "--queries", str(folder / "tune.npy"), "--kind", "hnsw"]) == 0
    return folder


def printed_recall(out: str, k: int) -> float:
    match = re.search(rf"recall@{k}\s+([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def test_verify_reports_recall_and_qps_of_any_query_file(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = built / "root"
    version_dir = layout.resolve_current(root)
    manifest_before = (version_dir / layout.MANIFEST).read_bytes()
    capsys.readouterr()
    assert main(["verify", str(root), "--queries", str(built / "shifted.npy"), "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "checksums    ok" in out and "queries      300 from shifted.npy" in out and "qps exact" in out
    # The same answers scored independently (float64 exact top-k, tie-aware) give the printed recall.
    reader = IndexReader.open(version_dir)
    queries = np.load(built / "shifted.npy")
    rows = reader.search(queries, 5, reader.default_params()).rows
    answers = [reader.external_ids(row[row >= 0]) for row in rows]
    items, ids, _ = catalogue(7)
    assert printed_recall(out, 5) == pytest.approx(true_recall(items, ids, queries, answers, 5), abs=1e-4)
    assert main(["verify", str(root), "--queries", str(built / "tune.npy")]) == 0
    assert printed_recall(capsys.readouterr().out, 10) > printed_recall(out, 5)  # the tuning traffic is easier
    assert (version_dir / layout.MANIFEST).read_bytes() == manifest_before


def test_verify_queries_bad_input_exits_2(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(built / "root")
    wrong_dim = tmp_path / "wrong.npy"
    np.save(wrong_dim, np.ones((3, 5), np.float32))
    ragged = tmp_path / "ragged.jsonl"
    ragged.write_text(json.dumps([1.0, 2.0]) + "\n")
    for argv in (
        ["verify", root, "--queries", str(wrong_dim)],
        ["verify", root, "--queries", str(ragged)],
        ["verify", root, "--queries", str(tmp_path / "missing.npy")],
        ["verify", root, "--queries", str(built / "tune.npy"), "--k", "0"],
        ["verify", root, "--k", "5"],
    ):
        assert main(argv) == 2, argv
        assert "index-builder: error:" in capsys.readouterr().err
