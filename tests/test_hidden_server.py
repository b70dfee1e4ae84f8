"""Hidden products on the real server (`recsys-serve`, 2 workers): a change made by the CLI or by one worker's
admin endpoint reaches both workers within 2 seconds, and no answer after that holds a hidden product."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Catalogue, request_body
from ops_helpers import Server, metric_samples, running_server

from index_builder.__main__ import main as builder_main

DEADLINE = 2.0


@pytest.fixture(scope="module")
def server(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("hidden-server") / "root"
    shutil.copytree(hnsw_root, root, symlinks=True)
    with running_server(root, tmp_path_factory.mktemp("logs"), workers=2) as running:
        yield running, root


def hidden_per_worker(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.base}/metrics", timeout=5).text
    return {
        labels.get("pid", ""): value for name, labels, value in metric_samples(text) if name == "recsys_hidden_items"
    }


def returned_ids(server: Server, catalogue: Catalogue, count: int) -> set[object]:
    """Ids answered to `count` requests, each on a new connection (SO_REUSEPORT spreads them over the workers)."""
    found: set[object] = set()
    for i in range(count):
        body = request_body("u", catalogue.test_queries[i % 20], k=10)
        with httpx.Client(timeout=5) as fresh:
            found |= {hit["id"] for hit in fresh.post(f"{server.base}/infer", json=body).json()["recommendations"]}
    return found


def wait_for_both_workers(server: Server, count: int, started: float) -> float:
    while True:
        per_worker = hidden_per_worker(server)
        if len(per_worker) == 2 and all(value == count for value in per_worker.values()):
            return time.monotonic() - started
        assert time.monotonic() - started < DEADLINE, f"workers still report {per_worker} hidden after {DEADLINE}s"
        time.sleep(0.05)


def test_cli_and_admin_changes_reach_both_workers_within_two_seconds(
    server: tuple[Server, Path], str_catalogue: Catalogue
) -> None:
    running, root = server
    shown = returned_ids(running, str_catalogue, 40)
    by_cli = sorted(shown, key=str)[: len(shown) // 2]
    by_admin = sorted(shown, key=str)[len(shown) // 2 :]

    started = time.monotonic()
    assert builder_main(["hide", str(root), *map(str, by_cli)]) == 0
    wait_for_both_workers(running, len(by_cli), started)
    assert not returned_ids(running, str_catalogue, 40) & set(by_cli)

    started = time.monotonic()
    response = httpx.post(f"{running.base}/admin/items/hide", json={"ids": by_admin}, timeout=5)
    assert response.status_code == 200, response.text
    wait_for_both_workers(running, len(shown), started)
    assert not returned_ids(running, str_catalogue, 40) & shown

    started = time.monotonic()
    response = httpx.post(f"{running.base}/admin/items/restore", json={"ids": sorted(shown, key=str)}, timeout=5)
    assert response.status_code == 200, response.text
    wait_for_both_workers(running, 0, started)
    assert returned_ids(running, str_catalogue, 40) == shown
