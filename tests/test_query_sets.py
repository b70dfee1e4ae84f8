"""`index-builder build --queries A --queries B`: tuned so that each sample reaches the target, recall per sample in
the manifest and in `inspect`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from live_recall_helpers import true_recall
from test_live_recall import catalogue, shifted

from index_builder.__main__ import main
from index_format import layout
from index_format.reader import IndexReader


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sets")
    items, ids, tune = catalogue(7)
    np.save(folder / "items.npy", items)
    (folder / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    np.save(folder / "last_week.npy", tune)  # easy: items plus a little noise
    np.save(folder / "new_model.npy", shifted(21, 600))  # hard: random directions
    return folder


def built(inputs: Path, root: Path, *sets: str) -> layout.Manifest:
    args = ["build", str(inputs / "items.npy"), "--ids", str(inputs / "ids.txt"), "--out", str(root), "--quiet"]
    queries = [arg for name in sets for arg in ("--queries", str(inputs / name))]
    assert main([*args, *queries, "--kind", "hnsw"]) == 0
    return layout.read_manifest(layout.resolve_current(root))


def served_recall(root: Path, queries: np.ndarray, k: int = 10) -> float:  # type: ignore[type-arg]
    reader = IndexReader.open(layout.resolve_current(root))
    rows = reader.search(queries, k, reader.default_params()).rows
    items, ids, _ = catalogue(7)
    return true_recall(items, ids, queries, [reader.external_ids(r[r >= 0]) for r in rows], k)


def test_each_query_set_reaches_the_target(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = built(inputs, tmp_path / "one", "last_week.npy")
    assert "query_sets" not in one.tuning  # a single sample: as before
    fresh_hard = shifted(77, 500)  # the new model's traffic, never seen by the builder
    assert served_recall(tmp_path / "one", fresh_hard) < 0.95, "tuned on last week alone, the new model is below target"

    two = built(inputs, tmp_path / "two", "last_week.npy", "new_model.npy")
    sets = {s["name"]: s for s in two.tuning["query_sets"]}
    assert set(sets) == {"last_week.npy", "new_model.npy"}
    assert two.default_params["efSearch"] > one.default_params["efSearch"]
    # Each set's tuning half reaches 0.95 with 95% confidence; its 300 held-out queries are a fresh sample, so they
    # may fall short by sampling noise (the standard error of a 300-query mean recall is ~0.01 here).
    assert all(s["recall_heldout"] >= 0.93 and s["n_heldout"] == 300 for s in sets.values()), sets
    assert two.tuning["queries_source"] == "files:last_week.npy,new_model.npy"
    before, after = served_recall(tmp_path / "one", fresh_hard), served_recall(tmp_path / "two", fresh_hard)
    assert after >= 0.93 and after > before + 0.03, (before, after)

    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "two")]) == 0
    out = capsys.readouterr().out
    for name, s in sets.items():
        assert f"query set    {name}: recall@10 {s['recall_heldout']:.4f} held-out (300 queries)" in out
    assert main(["verify", str(tmp_path / "two")]) == 0  # the held-out file still holds every set
