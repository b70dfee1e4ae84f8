"""The public Python API (`index_format.Searcher`): answers checked against numpy brute force and the HTTP service,
no padding ids, and one clear SearchError per kind of bad argument."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from api_helpers import TINY_CATEGORY, TINY_EVERY, Catalogue

from index_format import Searcher, SearchError
from index_format.reader import IndexReader


@pytest.fixture(scope="module")
def searcher(hnsw_root: Path) -> Searcher:
    return Searcher.open(hnsw_root)


def test_exact_answers_equal_brute_force(searcher: Searcher, str_catalogue: Catalogue) -> None:
    xq = str_catalogue.test_queries[:50]
    found = searcher.search(xq, 10, exact=True)
    truth_ids, truth_scores = str_catalogue.brute_force(xq, 10)
    for result, ids, scores in zip(found, truth_ids, truth_scores, strict=True):
        assert result.ids == ids
        assert result.scores.dtype == np.float32
        np.testing.assert_allclose(result.scores, scores, rtol=1e-5)


def test_ann_recall_against_exact(searcher: Searcher, str_catalogue: Catalogue) -> None:
    """The builder tuned the HNSW index for recall@10 ≥ 0.95 on held-out users; these are unseen users."""
    xq = str_catalogue.test_queries
    ann = searcher.search(xq, 10)
    exact = searcher.search(xq, 10, exact=True)
    recall = np.mean([len(set(a.ids) & set(e.ids)) / 10 for a, e in zip(ann, exact, strict=True)])
    assert recall >= 0.9


def test_same_answers_as_the_http_service(
    hnsw_root: Path, searcher: Searcher, str_catalogue: Catalogue, client_factory
) -> None:  # type: ignore[no-untyped-def]
    client = client_factory(hnsw_root)
    for i, vector in enumerate(str_catalogue.test_queries[:10]):
        options = {"k": 7, "filter": {"category": ["drinks"]}, "exclude": ["p1", "p2"], "exact": bool(i % 2)}
        body = client.post("/infer", json={"name": "u", "vector": [float(v) for v in vector], **options}).json()
        result = searcher.search(
            vector[None], 7, exact=bool(i % 2), filter={"category": ["drinks"]}, exclude=["p1", "p2"]
        )[0]
        assert [r["id"] for r in body["recommendations"]] == result.ids
        np.testing.assert_allclose([r["score"] for r in body["recommendations"]], result.scores, rtol=1e-6)


def test_no_padding_when_fewer_rows_qualify(searcher: Searcher, str_catalogue: Catalogue) -> None:
    """The issue's trap: k=5 over 2 allowed rows must give 2 results, not the last id repeated."""
    tiny = [f"p{row}" for row in range(0, len(str_catalogue.vectors), TINY_EVERY)]
    assert len(tiny) == 12
    query = str_catalogue.test_queries[:1]
    result = searcher.search(query, 5, filter={"category": [TINY_CATEGORY]}, exclude=tiny[2:])[0]
    assert sorted(result.ids) == sorted(tiny[:2])
    assert len(result.scores) == 2 and np.isfinite(result.scores).all()
    everything = searcher.search(query, 50, filter={"category": [TINY_CATEGORY]})[0]
    assert sorted(everything.ids) == sorted(tiny)


def test_reader_refuses_padding_rows(hnsw_root: Path) -> None:
    reader = IndexReader.open(hnsw_root / "current")
    with pytest.raises(ValueError, match="padding"):
        reader.external_ids(np.array([3, -1]))


def test_per_query_exclusions(searcher: Searcher, str_catalogue: Catalogue) -> None:
    xq = str_catalogue.test_queries[:3]
    first = searcher.search(xq, 5, exact=True)
    excluded = [r.ids[:2] for r in first]
    again = searcher.search(xq, 5, exact=True, exclude=excluded)
    for before, after, dropped in zip(first, again, excluded, strict=True):
        assert not set(dropped) & set(after.ids)
        assert after.ids[:3] == before.ids[2:]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectors": np.ones((2, 15))}, "wrong dimension"),
        ({"vectors": np.full((2, 16), np.nan)}, "row 0 holds a non-finite"),
        ({"k": 0}, "k: expected a positive integer"),
        ({"filter": {"colour": ["red"]}}, "unknown field 'colour'; this index has: category"),
        ({"filter": {"category": ["nope"]}}, "unknown value 'nope'"),
        (
            {"params": {"nprobe": 4}},
            "'nprobe' is not a search parameter of this index \\(hnsw\\); it accepts: efSearch",
        ),
        ({"params": {"efSearch": 0}}, "must be an integer in 1..2048"),
        ({"exclude": [1, 2]}, "expected str ids"),
        ({"exclude": [["p1"]]}, "1 lists of ids for 2 queries"),
    ],
)
def test_invalid_arguments(searcher: Searcher, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"vectors": np.ones((2, 16), np.float32), "k": 3, **kwargs}
    with pytest.raises(SearchError, match=message):
        searcher.search(**arguments)  # type: ignore[arg-type]
