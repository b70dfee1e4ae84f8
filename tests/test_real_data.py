"""Real data: `auto` at target 0.95 on gowalla_als (ALS factors, norm-skewed) reaches recall@10 ≥ 0.95 on user
queries the builder never saw. Skips when ../shared/data is absent (a user's fresh clone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_format import layout
from index_format.reader import IndexReader

GOWALLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gowalla_als"


@pytest.mark.skipif(not (GOWALLA / "items.npy").exists(), reason=f"{GOWALLA} not present")
def test_auto_reaches_target_on_unseen_gowalla_users(tmp_path: Path) -> None:
    items = np.load(GOWALLA / "items.npy")
    queries = np.load(GOWALLA / "queries.npy")
    gt_ids = np.load(GOWALLA / "gt_ids.npy")
    gt_scores = np.load(GOWALLA / "gt_scores.npy")
    embeddings = Embeddings(np.arange(items.shape[0], dtype=np.int64), items, source_name="items.npy")
    build(embeddings, tmp_path, queries[:5000], BuildOptions(kind="auto", target_recall=0.95))
    reader = IndexReader.open(layout.resolve_current(tmp_path))

    unseen = slice(5000, 7000)  # the builder tuned on queries[:5000]
    found = reader.search(queries[unseen], 10)
    item_rows = np.where(found.rows >= 0, reader.ids[np.maximum(found.rows, 0)], -1)
    kth = gt_scores[unseen, 9:10]
    true_scores = np.einsum("qkd,qd->qk", items[np.maximum(item_rows, 0)], queries[unseen])
    hits = (item_rows >= 0) & (true_scores >= kth - 1e-5 * np.abs(kth))
    recall = hits.mean()
    assert recall >= 0.95, f"auto chose {reader.manifest.kind} {reader.manifest.default_params}: recall {recall:.4f}"
    # and the exact path equals the ground truth
    exact = reader.search(queries[unseen][:200], 10, exact=True)
    assert np.array_equal(reader.ids[exact.rows[:, 0]], gt_ids[unseen][:200, 0])
