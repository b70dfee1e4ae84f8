"""Operations against a real `recsys-serve`: 10 hot swaps under a client loop with 0 failed requests, corrupt
versions refused while the old one answers, /metrics merged over 2 workers, overload (503 + Retry-After) and
recovery, graceful SIGTERM with a request in flight, JSON access logs without keys."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ops_helpers import (
    Server,
    Version,
    build_version,
    maps_inside,
    metric_samples,
    metric_value,
    publish_corrupt,
    running_server,
)

RELOAD_INTERVAL = 0.2
DIM = 8


@pytest.fixture(scope="module")
def swap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swap") / "indexes"


@pytest.fixture(scope="module")
def versions(swap_root: Path) -> dict[str, Version]:
    """Every version published under swap_root, by name (tests add theirs)."""
    first = build_version(swap_root, "v0", seed=100)
    return {first.name: first}


@pytest.fixture(scope="module")
def server(swap_root: Path, versions: dict[str, Version], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        swap_root, tmp_path_factory.mktemp("logs"), workers=2, RECSYS_RELOAD_INTERVAL=str(RELOAD_INTERVAL)
    ) as running:
        yield running


def scrape(server: Server) -> str:
    return httpx.get(f"{server.base}/metrics", timeout=10).text


def serving_by_worker(metrics: str) -> dict[str, str]:
    """pid -> the version that worker serves (recsys_index_info == 1)."""
    return {
        labels["pid"]: labels["version"]
        for name, labels, value in metric_samples(metrics)
        if name == "recsys_index_info" and value == 1
    }


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def all_workers_serve(server: Server, version: str) -> bool:
    by_worker = serving_by_worker(scrape(server))
    return len(by_worker) == 2 and set(by_worker.values()) == {version}


class ClientLoop:
    """Threads posting exact /infer requests until stopped (at most `limit` each), recording every outcome."""

    def __init__(self, base: str, threads: int = 2, limit: int = 5000) -> None:
        self.base = base
        self.queries = np.random.default_rng(7).standard_normal((16, DIM)).astype(np.float32)
        self.stop = threading.Event()
        self.outcomes: list[tuple[int, str | None, int, list[str]]] = []
        self.seen: set[str | None] = set()
        self.errors: list[str] = []
        self.limit = limit
        self.pool = ThreadPoolExecutor(threads)
        self.futures = [self.pool.submit(self._run, t) for t in range(threads)]

    def _run(self, thread: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            for i in range(self.limit):
                if self.stop.is_set():
                    return
                q = (i * 7 + thread) % len(self.queries)
                try:
                    response = client.post("/infer", json={"name": "u", "vector": self.queries[q].tolist()})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                ids = [r["id"] for r in response.json().get("recommendations", [])]
                self.outcomes.append((response.status_code, response.headers.get("x-index-version"), q, ids))
                self.seen.add(response.headers.get("x-index-version"))

    def finish(self) -> None:
        self.stop.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()


def test_ten_swaps_under_load_fail_no_request(server: Server, swap_root: Path, versions: dict[str, Version]) -> None:
    """Order-free: starts from whatever version the server serves, counts swaps as deltas."""
    before = scrape(server)
    serving = set(serving_by_worker(before).values())
    assert len(serving) == 1, serving
    first = serving.pop()
    published = [first]
    loop = ClientLoop(server.base)
    try:
        wait_for(lambda: first in loop.seen, 60, f"the client loop answered by the first version {first}")
        for i in range(1, 11):
            version = build_version(swap_root, f"v{i}", seed=100 + i)  # the real builder publishes and repoints
            versions[version.name] = version
            published.append(version.name)
            wait_for(
                lambda name=version.name: all_workers_serve(server, name) and name in loop.seen,
                60,
                f"both workers on {version.name}, and the client loop answered by it",
            )
    finally:
        loop.finish()
    assert not loop.errors, loop.errors[:5]
    assert loop.outcomes and {status for status, *_ in loop.outcomes} == {200}
    seen = set()
    for _, name, q, ids in loop.outcomes:
        assert name in versions, f"answered by {name}, which is not a published version"
        assert versions[name].is_exact_top(loop.queries[q], ids, 10), f"answer not from a complete {name}"
        seen.add(name)
    assert seen == set(published), (
        f"versions never observed: {set(published) - seen}, unexpected: {seen - set(published)}"
    )

    # Old versions are released once their requests finish: no worker still maps them.
    def released() -> str | None:
        metrics = scrape(server)
        return metrics if metric_value(metrics, "recsys_index_retired_versions") == 0 else None

    metrics = wait_for(released, 30, "old versions released")
    swapped = metric_value(metrics, "recsys_index_reloads_total", outcome="swapped")
    assert swapped - metric_value(before, "recsys_index_reloads_total", outcome="swapped") == 20
    latest = versions[published[-1]]
    for pid in server.workers():
        assert maps_inside(latest.dir, pid)
        for old in versions.values():
            if old is not latest:
                assert not maps_inside(old.dir, pid), f"worker {pid} still maps {old.name}"


def test_corrupt_versions_are_refused_and_the_old_one_keeps_answering(
    server: Server, swap_root: Path, versions: dict[str, Version]
) -> None:
    """Order-free: publishes its own good version first."""
    good = build_version(swap_root, "good", seed=500)
    versions[good.name] = good
    wait_for(lambda: all_workers_serve(server, good.name), 60, "both workers on the good version")
    refused_before = metric_value(scrape(server), "recsys_index_reloads_total", outcome="refused")
    for step, how in enumerate(("flip", "truncate"), start=1):
        publish_corrupt(swap_root, good.dir, how, f"zz-corrupt-{how}")
        expected = refused_before + 2 * step  # each of the 2 workers refuses it once
        wait_for(
            lambda expected=expected: (
                metric_value(scrape(server), "recsys_index_reloads_total", outcome="refused") == expected
            ),
            60,
            f"both workers refusing the {how} version",
        )
        # Several more polls must not retry it. Skipped checks are not counted anywhere, so this waits; a slow
        # machine polls less often in that time, which weakens the check but cannot make it fail wrongly.
        time.sleep(5 * RELOAD_INTERVAL)
        metrics = scrape(server)
        assert metric_value(metrics, "recsys_index_reloads_total", outcome="refused") == expected
        assert set(serving_by_worker(metrics).values()) == {good.name}
        with httpx.Client(base_url=server.base) as client:
            for q in np.random.default_rng(step).standard_normal((20, DIM)).astype(np.float32):
                response = client.post("/infer", json={"name": "u", "vector": q.tolist()})
                assert response.status_code == 200
                assert response.headers["x-index-version"] == good.name
                assert good.is_exact_top(q, [r["id"] for r in response.json()["recommendations"]], 10)
    assert "refused index version" in server.log()
    fixed = build_version(swap_root, "v-fixed", seed=999)
    versions[fixed.name] = fixed
    wait_for(lambda: all_workers_serve(server, fixed.name), 60, "both workers on the fixed version")


def test_metrics_merge_both_workers(server: Server) -> None:
    before = scrape(server)
    sent = 0
    while True:
        for _ in range(50):  # a new connection per request, so the kernel spreads them over both workers
            response = httpx.post(
                f"{server.base}/batch", json=[{"name": "u", "vector": [0.5] * DIM}] * 3, headers={"connection": "close"}
            )
            assert response.status_code == 200
            sent += 1
        metrics = scrape(server)
        per_worker = {
            labels["pid"]: value for name, labels, value in metric_samples(metrics) if name == "recsys_worker_requests"
        }
        if len(per_worker) == 2 and all(value > 0 for value in per_worker.values()) or sent >= 1000:
            break
    assert sorted(int(pid) for pid in per_worker) == server.workers()
    assert all(value > 0 for value in per_worker.values()), per_worker
    batch_counted = metric_value(metrics, "recsys_http_requests_total", endpoint="/batch", status="200")
    assert batch_counted - metric_value(before, "recsys_http_requests_total", endpoint="/batch", status="200") == sent
    # At the moment of a scrape, the live workers' own counts add up to every request counted so far.
    assert sum(per_worker.values()) == metric_value(metrics, "recsys_http_requests_total")
    assert metric_value(metrics, "recsys_batch_size_count") - metric_value(before, "recsys_batch_size_count") == sent
    assert metric_value(metrics, "recsys_queries_total", kind="exact") >= 3 * sent
    assert metric_value(metrics, "recsys_index_items") == 2 * 400


# ---- overload, keys and logs, graceful shutdown: a separate single-worker server --------------------------------

USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-fedcba9876543210"
WRONG_KEY = "wrong-key-5555555555555555"


@pytest.fixture(scope="module")
def heavy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heavy") / "indexes"
    build_version(root, "h", seed=5, n=20_000, dim=32)
    return root


@contextmanager
def guarded_server(root: Path, log_dir: Path) -> Iterator[Server]:
    """One worker, at most 2 requests in progress, keys and JSON access logs."""
    env = {
        "RECSYS_MAX_CONCURRENCY": "2",
        "RECSYS_RETRY_AFTER": "2",
        "RECSYS_API_KEYS": f"{USER_KEY},old-user-key-0000000000",
        "RECSYS_ADMIN_KEYS": ADMIN_KEY,
        "RECSYS_ACCESS_LOG": "1",
        "RECSYS_LOG_FORMAT": "json",
    }
    with running_server(root, log_dir, workers=1, **env) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(heavy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with guarded_server(heavy_root, tmp_path_factory.mktemp("guarded")) as running:
        yield running


def heavy_batch() -> list[dict[str, Any]]:
    queries = np.random.default_rng(3).standard_normal((400, 32)).astype(np.float32)
    return [{"name": f"u{i}", "vector": q.tolist(), "exact": True} for i, q in enumerate(queries)]


def test_overload_answers_503_with_retry_after_quickly_and_recovers(guarded: Server) -> None:
    body = heavy_batch()
    encoded = json.dumps(body).encode()  # once: the client's own JSON encoding must not dominate the timings
    headers = {"authorization": f"Bearer {USER_KEY}", "content-type": "application/json"}

    def flood(_: int) -> list[tuple[int, str | None]]:
        out = []
        with httpx.Client(base_url=guarded.base, headers=headers, timeout=60) as client:
            for _ in range(6):
                response = client.post("/batch", content=encoded)
                assert response.headers["content-type"] == "application/json"
                out.append((response.status_code, response.headers.get("retry-after")))
        return out

    with ThreadPoolExecutor(7) as pool:
        health = pool.submit(lambda: [httpx.get(f"{guarded.base}/healthz").status_code for _ in range(5)])
        results = [result for results in pool.map(flood, range(6)) for result in results]
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(503) >= 6 and statuses.count(200) >= 2
    assert all(retry == "2" for status, retry in results if status == 503)
    # That a 503 comes at once (never after queueing for a slot) is shown without clocks in test_ops_limits.py:
    # there it is answered while both slots are held by requests that cannot finish.
    assert health.result() == [200] * 5, "probes must answer while the worker is full"
    assert guarded.process.poll() is None
    response = httpx.post(f"{guarded.base}/batch", json=body[:5], headers=headers, timeout=30)
    assert response.status_code == 200 and len(response.json()) == 5
    metrics = httpx.get(f"{guarded.base}/metrics").text
    assert metric_value(metrics, "recsys_rejected_requests_total", reason="concurrency") == statuses.count(503)


def test_keys_over_http_and_never_in_the_logs(guarded: Server) -> None:
    vector = {"name": "u", "vector": [0.1] * 32}
    url = f"{guarded.base}/infer"
    assert httpx.post(url, json=vector).status_code == 401
    assert httpx.post(url, json=vector, headers={"x-api-key": WRONG_KEY}).status_code == 401
    assert httpx.post(url, json=vector, headers={"x-api-key": "old-user-key-0000000000"}).status_code == 200
    assert httpx.post(f"{guarded.base}/admin/reload", headers={"x-api-key": USER_KEY}).status_code == 403
    reload = httpx.post(f"{guarded.base}/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert reload.status_code == 200 and reload.json()["outcome"] == "unchanged"
    response = httpx.post(url, json=vector, headers={"x-api-key": USER_KEY, "x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"

    def access_lines() -> list[dict[str, Any]]:
        lines = [line for line in guarded.log().splitlines() if line.startswith("{") and '"api.access"' in line]
        return [json.loads(line) for line in lines]

    # The access line of the last request is written after its response: wait for it rather than a fixed time.
    wait_for(lambda: any(line.get("request_id") == "trace-42" for line in access_lines()), 30, "the access log line")
    log = guarded.log()
    for key in (USER_KEY, ADMIN_KEY, WRONG_KEY, "old-user-key"):
        assert key not in log
    access = access_lines()
    statuses = {(line["path"], line["status"]) for line in access}
    assert {("/infer", 401), ("/infer", 200), ("/admin/reload", 403), ("/admin/reload", 200)} <= statuses
    assert any(line.get("request_id") == "trace-42" and line["index_version"] for line in access)
    assert all(line["request_id"] for line in access)


def refuses_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_sigterm_finishes_the_request_in_flight_then_exits(heavy_root: Path, tmp_path: Path) -> None:
    """Its own server (it stops it). The request's body is half sent when SIGTERM arrives."""
    with guarded_server(heavy_root, tmp_path) as server:
        body = json.dumps({"name": "late", "vector": [0.25] * 32}).encode()
        host, port = server.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            head = (
                f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"X-API-Key: {USER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + body[:10])
            # The app has the request (the limiter counts it in flight) before the signal, not after a fixed time.
            wait_for(
                lambda: metric_value(scrape(server), "recsys_in_flight_requests") == 1, 30, "the request in flight"
            )
            server.process.send_signal(signal.SIGTERM)
            wait_for(lambda: refuses_connections(host, int(port)), 30, "no longer accepting new connections")
            assert server.process.poll() is None, "exited with a request in flight"
            sock.sendall(body[10:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", response[:200]
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["name"] == "late"
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
