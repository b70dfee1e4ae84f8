"""Hot swap in one process: a new version goes live only when sound, requests keep the version they started with,
the old mapping is released, and bad versions are refused, counted and not retried."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ops_helpers import Version, build_version, maps_inside, metric_value, publish_corrupt, repoint
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from index_format import layout


def started(root: Path, **overrides: Any) -> Iterator[TestClient]:
    settings = Settings(index_root=root, reload_interval=overrides.pop("reload_interval", 0.0), **overrides)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "indexes"


@pytest.fixture
def first(root: Path) -> Version:
    return build_version(root, "a", seed=1)


@pytest.fixture
def client(root: Path, first: Version) -> Iterator[TestClient]:
    yield from started(root)


def ask(client: TestClient, version: Version, seed: int = 0) -> tuple[str, list[str]]:
    """One exact /infer; returns (X-Index-Version, ids) after checking the ids are that version's exact top 5."""
    query = np.random.default_rng(seed).standard_normal(version.vectors.shape[1]).astype(np.float32)
    response = client.post("/infer", json={"name": "u", "vector": query.tolist(), "k": 5})
    assert response.status_code == 200, response.text
    ids = [r["id"] for r in response.json()["recommendations"]]
    assert version.is_exact_top(query, ids, 5), (ids, version.exact_top(query, 5))
    return response.headers["x-index-version"], ids


def reload(client: TestClient) -> dict[str, Any]:
    response = client.post("/admin/reload")
    body: dict[str, Any] = response.json()
    assert response.status_code == (409 if body["outcome"] == "refused" else 200)
    return body


def test_reload_swaps_and_releases_the_old_mapping(client: TestClient, root: Path, first: Version) -> None:
    assert ask(client, first)[0] == first.name
    assert maps_inside(first.dir), "the served version is memory-mapped"
    second = build_version(root, "b", seed=2)
    result = reload(client)
    assert (result["outcome"], result["previous"], result["version"]) == ("swapped", first.name, second.name)
    assert ask(client, second)[0] == second.name
    assert client.get("/index").json()["version"] == second.name
    gc.collect()
    assert not maps_inside(first.dir), "the old version's files are still mapped"
    assert maps_inside(second.dir)
    assert reload(client)["outcome"] == "unchanged"


def test_a_request_in_flight_keeps_its_version(client: TestClient, root: Path, first: Version) -> None:
    holder = client.app.state.holder  # type: ignore[attr-defined]
    in_flight = holder.current  # what a request read before the swap
    build_version(root, "b", seed=2)
    assert reload(client)["outcome"] == "swapped"
    gc.collect()
    assert maps_inside(first.dir), "released while a request still uses it"
    xq = np.ascontiguousarray(first.vectors[:2])
    rows = in_flight.reader.search(xq, 3, exact=True).rows
    assert all(i.startswith("a-") for i in in_flight.reader.external_ids(rows[0]))
    del in_flight
    assert client.app.state.ops.reloader.collect_retired() == 0  # type: ignore[attr-defined]
    assert not maps_inside(first.dir)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_corrupt_version_is_refused_counted_and_not_retried(
    client: TestClient, root: Path, first: Version, how: str
) -> None:
    bad = publish_corrupt(root, first.dir, how, "corrupt-" + how)
    result = reload(client)
    assert result["outcome"] == "refused" and result["version"] == first.name
    assert ("sha256" if how == "flip" else "size") in result["error"]
    assert ask(client, first)[0] == first.name
    reloader = client.app.state.ops.reloader  # type: ignore[attr-defined]
    assert client.portal.call(reloader.check).outcome == "skipped"  # type: ignore[union-attr]
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "recsys_index_reloads_total", outcome="refused") == 1
    assert metric_value(metrics, "recsys_index_info", version=first.name) == 1
    assert not maps_inside(bad)
    second = build_version(root, "b", seed=2)  # current moves on: the next check loads it
    assert reload(client)["outcome"] == "swapped"
    assert ask(client, second)[0] == second.name


def test_truncated_file_without_checksums_is_refused_by_faiss(root: Path, first: Version) -> None:
    for client in started(root, verify_checksums=False):
        publish_corrupt(root, first.dir, "truncate", "truncated")
        result = reload(client)
        assert result["outcome"] == "refused" and "faiss cannot read" in result["error"]
        assert ask(client, first)[0] == first.name


def test_missing_or_dangling_current_is_refused(client: TestClient, root: Path, first: Version) -> None:
    repoint(root, "no-such-version")
    assert reload(client)["outcome"] == "refused"
    (root / layout.CURRENT_LINK).unlink()
    assert reload(client)["outcome"] == "refused"
    assert ask(client, first)[0] == first.name
    repoint(root, first.dir)
    assert reload(client)["outcome"] == "unchanged"


def test_a_new_dimension_needs_allow_dim_change(root: Path, first: Version) -> None:
    for client in started(root):
        wider = build_version(root, "w", seed=3, dim=12)
        result = reload(client)
        assert result["outcome"] == "refused" and "RECSYS_ALLOW_DIM_CHANGE" in result["error"]
        assert ask(client, first)[0] == first.name
    repoint(root, first.dir)
    for client in started(root, allow_dim_change=True):
        repoint(root, wider.dir)
        assert reload(client)["outcome"] == "swapped"
        assert ask(client, wider)[0] == wider.name
        assert client.post("/infer", json={"name": "u", "vector": [0.0] * 8}).status_code == 422


def test_polling_follows_current_without_a_request(root: Path, first: Version) -> None:
    for client in started(root, reload_interval=0.05):
        second = build_version(root, "b", seed=2)
        deadline = time.monotonic() + 60  # generous: a busy machine polls late, never wrongly
        while client.get("/index").json()["version"] != second.name:
            assert time.monotonic() < deadline, "the poller never picked up the new version"
            time.sleep(0.05)
        assert ask(client, second)[0] == second.name
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "recsys_index_reloads_total", outcome="swapped") == 1
        assert metric_value(metrics, "recsys_index_info", version=second.name) == 1
        assert metric_value(metrics, "recsys_index_info", version=first.name) == 0
