from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index_builder.inputs import load_embeddings, load_queries

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = ["products.jsonl", "queries.npy"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    subprocess.run([sys.executable, str(DATA / "make_demo.py"), "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("name", FILES)
def test_regenerates_byte_identical(regenerated: Path, name: str) -> None:
    assert (regenerated / name).read_bytes() == (DATA / "demo" / name).read_bytes()


def test_demo_is_small() -> None:
    assert sum((DATA / "demo" / name).stat().st_size for name in FILES) < 2_000_000


def test_demo_loads_and_looks_like_a_recommender() -> None:
    emb = load_embeddings(DATA / "demo" / "products.jsonl")
    assert (len(emb), emb.dim, emb.id_type) == (5_000, 32, "str")
    assert isinstance(emb.ids, list) and emb.ids[17] == "p00017"
    categories = emb.metadata["category"]
    sizes = sorted((categories.count(c) for c in set(categories)), reverse=True)
    assert len(sizes) == 12 and sizes[0] > 5 * sizes[-1]
    norms = np.linalg.norm(emb.vectors, axis=1)
    assert 50 < norms.max() / np.percentile(norms, 1) < 200
    xq = load_queries(DATA / "demo" / "queries.npy", emb.dim)
    assert xq.shape == (1_000, 32) and xq.dtype == np.float32
    items = {row.tobytes() for row in emb.vectors}
    assert not any(q.tobytes() in items for q in xq)  # users are not copies of items
