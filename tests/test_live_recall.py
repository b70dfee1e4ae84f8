"""Live recall on a seeded synthetic HNSW index (one process; the real 2-worker run on shared data is
tests/test_live_recall_server.py): the estimate matches the true recall of shifted traffic, the effort is raised
until fresh requests reach the target, a restart keeps it, a swap starts over, and overload drops samples only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_helpers import Catalogue
from live_recall_helpers import effort_of, estimate, poll, true_recall
from starlette.testclient import TestClient

from api.app import create_app
from api.effort import EffortBounds, EffortStore, next_rung
from api.live_recall import wilson
from api.settings import Settings
from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_format import layout
from index_format.query import Query

N, DIM, K = 4000, 24, 10
TARGET = 0.95


def catalogue(seed: int) -> tuple[np.ndarray[Any, Any], list[str], np.ndarray[Any, Any]]:
    """Clustered items with spread norms; tuning queries are items plus a little noise (easy for HNSW)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)) * 2
    items = centres[rng.integers(0, 40, N)] + rng.standard_normal((N, DIM))
    items *= rng.lognormal(0, 0.3, (N, 1))
    tune = items[rng.choice(N, 600)] + 0.3 * rng.standard_normal((600, DIM))
    return items.astype(np.float32), [f"p{i}" for i in range(N)], tune.astype(np.float32)


def shifted(seed: int, count: int) -> np.ndarray[Any, Any]:
    """Traffic unlike the tuning sample: random directions (far from every item cluster)."""
    return (np.random.default_rng(seed).standard_normal((count, DIM)) * 3).astype(np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "indexes"
    items, ids, tune = catalogue(7)
    _, manifest = build(Embeddings(ids=ids, vectors=items, metadata={}), out, tune, BuildOptions(kind="hnsw"))
    assert manifest.recall_at_k >= TARGET and manifest.target_recall == TARGET
    return out


@contextmanager
def app(root: Path, state: Path, **overrides: Any) -> Iterator[TestClient]:
    base: dict[str, Any] = dict(
        index_root=root,
        reload_interval=0.0,
        recall_sample_rate=1.0,
        recall_cpu_budget=1000.0,
        recall_queue=100_000,
        recall_min_samples=100,
        recall_decide_samples=400,
        recall_interval=0.05,
        recall_state_dir=str(state),
    )
    with TestClient(create_app(Settings(**{**base, **overrides}))) as client:
        yield client


def ask(client: TestClient, queries: np.ndarray[Any, Any]) -> list[list[str]]:
    answers = []
    for query in queries:
        response = client.post("/infer", json={"name": "u", "vector": query.tolist(), "k": K})
        assert response.status_code == 200, response.text
        answers.append([r["id"] for r in response.json()["recommendations"]])
    return answers


def checked(client: TestClient, count: int) -> dict[str, Any]:
    """GET /index once the worker has checked `count` samples of the effort in force."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get("/index").json()
        found = estimate(body)
        return body if found is not None and found["samples"] >= count else None

    result: dict[str, Any] = poll(done, 30, f"{count} checked samples")
    return result


def test_wilson_interval_and_ladder() -> None:
    low, high = wilson(0.9, 1000)
    assert low < 0.9 < high and high - low < 0.04
    assert wilson(1.0, 50)[1] == pytest.approx(1.0) and 0.9 < wilson(1.0, 50)[0] < 1.0
    assert wilson(0.5, 0) == (0.0, 1.0)
    assert next_rung("efSearch", 16, 128) == 24 and next_rung("efSearch", 768, 2000) == 1152
    assert next_rung("nprobe", 12, 14) == 14 and next_rung("nprobe", 14, 14) is None
    bounds = EffortBounds.of({"efSearch": 16}, 8.0, {"efSearch": 100})
    assert bounds.ceiling == 100
    assert bounds.clamp({"efSearch": 4}) == {"efSearch": 16} and bounds.clamp({"efSearch": 500}) == {"efSearch": 100}


def test_a_worker_does_not_overwrite_a_raise_made_by_another(tmp_path: Path) -> None:
    store = EffortStore(tmp_path)
    store.update("v1", {"efSearch": 16}, {"params": {"efSearch": 24}})
    kept = store.update("v1", {"efSearch": 16}, {"params": {"efSearch": 24}})  # a second worker, same evidence
    assert kept["params"] == {"efSearch": 24}
    assert store.update("v1", {"efSearch": 24}, {"params": {"efSearch": 32}})["params"] == {"efSearch": 32}


def test_estimate_converges_effort_rises_restart_keeps_it_swap_starts_over(root: Path, tmp_path: Path) -> None:
    items, ids, _ = catalogue(7)
    state = tmp_path / "state"
    tuned = layout.read_manifest(layout.resolve_current(root)).default_params
    traffic = shifted(11, 1000)

    # 1. Correction off: 1,000 shifted requests; the estimate is within 0.03 of their true recall, below target.
    with app(root, state, recall_correct=False) as client:
        answers = ask(client, traffic)
        truth = true_recall(items, ids, traffic, answers, K)
        found = estimate(checked(client, len(traffic)))
        assert found is not None
        print(f"shifted traffic: true recall@{K} {truth:.4f}, live estimate {found}")
        assert truth < TARGET - 0.03, f"the shifted traffic should be below target, got {truth:.3f}"
        assert abs(found["recall"] - truth) <= 0.03, (found, truth)
        assert found["interval"][0] <= truth <= found["interval"][1], (found, truth)

    # 2. Correction on: the effort rises until the estimate's lower bound reaches the target; fresh requests do.
    with app(root, state) as client:
        for round_ in range(20):
            before = effort_of(client.get("/index").json())
            ask(client, shifted(100 + round_, 200))
            body = client.get("/index").json()
            found = estimate(body)
            if effort_of(body) == before and found is not None and found["interval"][0] >= TARGET:
                break
        raised = effort_of(client.get("/index").json())
        assert raised["efSearch"] > tuned["efSearch"]
        fresh = shifted(999, 500)
        after = true_recall(items, ids, fresh, ask(client, fresh), K)
        print(f"effort {tuned} -> {raised}: fresh requests' true recall@{K} {after:.4f}")
        assert after >= TARGET
        saved = EffortStore(state).read(layout.read_manifest(layout.resolve_current(root)).version)
        assert saved is not None and saved["params"] == raised and "live recall" in saved["reason"]

    # 3. A restart keeps the raised effort (read at load, before any request).
    with app(root, state, recall_sample_rate=0.0) as client:
        assert effort_of(client.get("/index").json()) == raised
        assert true_recall(items, ids, fresh, ask(client, fresh), K) >= TARGET

        # 4. A swap: the new version starts from its own manifest values and an empty estimate.
        new_items, new_ids, new_tune = catalogue(8)
        version_dir, manifest = build(
            Embeddings(ids=new_ids, vectors=new_items, metadata={}), root, new_tune, BuildOptions(kind="hnsw")
        )
        assert client.post("/admin/reload").json()["outcome"] == "swapped"
        body = client.get("/index").json()
        assert body["version"] == manifest.version
        assert effort_of(body) == manifest.default_params
        assert body["live_recall"]["by_effort"] == {}


def test_overload_drops_samples_never_requests(root: Path, tmp_path: Path) -> None:
    """No CPU budget for checks and a queue of 4: every request is answered, the samples beyond 4 are dropped."""
    items, ids, _ = catalogue(7)
    with app(root, tmp_path, recall_cpu_budget=0.0, recall_queue=4, recall_correct=False) as client:
        traffic = shifted(5, 200)
        answers = ask(client, traffic)
        assert len(answers) == 200 and all(len(a) == K for a in answers)
        sampling = client.get("/index").json()["live_recall"]["sampling"]
        assert sampling["queued"] <= 4
        assert sampling["dropped"]["queue_full"] >= 196 - 4
        assert estimate(client.get("/index").json()) is None  # nothing checked: no budget
        poll(
            lambda: 'recsys_live_recall_dropped_total{reason="queue_full"}' in client.get("/metrics").text,
            10,
            "the dropped samples in /metrics",
        )


def test_exact_and_own_params_requests_are_not_sampled(root: Path, tmp_path: Path) -> None:
    with app(root, tmp_path, recall_correct=False) as client:
        for query in shifted(6, 50):
            for extra in ({"exact": True}, {"params": {"efSearch": 64}}):
                response = client.post("/infer", json={"name": "u", "vector": query.tolist(), "k": K, **extra})
                assert response.status_code == 200
        ask(client, shifted(7, 10))
        body = checked(client, 10)
        assert estimate(body) is not None and estimate(body)["samples"] == 10  # type: ignore[index]


def test_filtered_ann_answers_are_estimated_as_their_own_kind(
    hnsw_root: Path, str_catalogue: Catalogue, tmp_path: Path
) -> None:
    """Filters searched through the ANN index (thresholds at 0) are sampled as `filtered`; the estimate is the true
    tie-aware recall over the allowed rows."""
    names = {"snacks", "drinks"}
    allowed = str_catalogue.rows_in(names)
    queries = str_catalogue.test_queries[:200]
    overrides = dict(filter_exact_fraction=0.0, filter_exact_budget=0, recall_correct=False)
    with app(hnsw_root, tmp_path, **overrides) as client:
        hits = []
        for query in queries:
            body = {"name": "u", "vector": query.tolist(), "k": K, "filter": {"category": sorted(names)}}
            response = client.post("/infer", json=body)
            assert response.status_code == 200, response.text
            got = [r["id"] for r in response.json()["recommendations"]]
            _, true_scores = str_catalogue.brute_force(query[None], K, allowed)
            kth = float(true_scores[0, -1])
            exact = [float(str_catalogue.vectors[str_catalogue.row_of[i]] @ query) for i in got]
            hits.append(sum(score >= kth - 1e-5 * abs(kth) - 1e-6 for score in exact) / K)
        found = poll(
            lambda: (e := estimate(client.get("/index").json(), "filtered")) and e["samples"] >= len(queries) and e,
            30,
            "the filtered samples",
        )
        assert estimate(client.get("/index").json(), "ann") is None
        print(f"filtered: live {found}, true {np.mean(hits):.4f}")
        assert abs(found["recall"] - float(np.mean(hits))) <= 0.002, (found, np.mean(hits))


def test_checks_yield_to_the_looks_when_the_queue_never_empties(root: Path, tmp_path: Path) -> None:
    """Under sustained traffic the queue may never empty: the checks stop at the deadline, so the thread still looks
    at the estimate and the shared effort file every interval (it raises, and follows other workers' raises)."""
    with app(root, tmp_path, recall_sample_rate=0.0, recall_correct=False) as client:  # no thread: drain by hand
        live = client.app.state.live_recall  # type: ignore[attr-defined]
        loaded = live.holder.current
        queries = [Query(vector=vector, k=K) for vector in shifted(3, 2000)]
        plans = [loaded.engine.plan(query) for query in queries]
        live.offer(loaded, queries, plans, loaded.engine.search(queries, plans))
        live.searched(1000.0)  # budget enough for every check
        started = time.monotonic()
        checked = live.drain(until=started + 0.02)
        assert time.monotonic() - started < 0.5
        assert 0 < checked < len(queries) and len(live.queue) == len(queries) - checked


def test_answers_with_a_delta_and_hidden_products_are_checked_against_their_own_exact_answer(tmp_path: Path) -> None:
    """With products added (a delta segment) and 1% hidden, every sample is checked (none fails) and the estimate
    is the true recall over the visible main products plus the added ones."""
    from index_builder.__main__ import main as builder_main
    from index_format import availability

    items, ids, tune = catalogue(7)
    changed = tmp_path / "changed"  # its own index: other tests here publish versions into the module's root
    build(Embeddings(ids=ids, vectors=items, metadata={}), changed, tune, BuildOptions(kind="hnsw"))
    rng = np.random.default_rng(3)
    picked = rng.choice(N, 200, replace=False)
    added = (items[picked] * 1.05 + 0.05 * rng.standard_normal((200, DIM))).astype(np.float32)
    added_ids = [f"new{i}" for i in range(200)]
    np.save(tmp_path / "new.npy", added)
    (tmp_path / "new_ids.txt").write_text("\n".join(added_ids) + "\n")
    assert builder_main(["add", str(changed), str(tmp_path / "new.npy"), "--ids", str(tmp_path / "new_ids.txt")]) == 0
    hidden = [ids[int(r)] for r in rng.choice(N, N // 100, replace=False)]
    availability.change(changed, hide=hidden)
    visible = [r for r in range(N) if ids[r] not in set(hidden)]
    all_vectors = np.concatenate([items[visible], added])
    all_ids = [ids[r] for r in visible] + added_ids
    traffic = (items[rng.choice(N, 300)] + 0.3 * rng.standard_normal((300, DIM))).astype(np.float32)
    with app(changed, tmp_path / "state", recall_correct=False) as client:
        answers = ask(client, traffic)
        assert any(set(a) & set(added_ids) for a in answers)  # the delta is answered
        body = checked(client, len(traffic))
    found = estimate(body)
    assert found is not None and found["samples"] == len(traffic)  # every sample checked, none failed
    truth = true_recall(all_vectors, all_ids, traffic, answers, K)
    assert abs(found["recall"] - truth) <= 0.02, (found, truth)
