"""RECSYS_SERVER=granian: the same app under granian, 2 workers, a real server: it answers like the uvicorn server
(exact answers equal brute force; the same validation errors), exports metrics, and stops on SIGTERM leaving no
process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import Catalogue, request_body
from ops_helpers import REPO, free_port, serve_command

pytest.importorskip("granian")
WORKERS = 2


@pytest.fixture(scope="module")
def granian_server(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("granian") / "server.log"
    command = [*serve_command(), "--index-root", str(hnsw_root), "--port", str(port), "--workers", str(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_SERVER": "granian"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while log_path.read_text(errors="replace").count("serving index") < WORKERS:
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        while True:  # every worker loaded; the port answers once granian accepts
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        yield base, process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


def test_granian_answers_exactly_and_validates(granian_server: tuple[str, int], str_catalogue: Catalogue) -> None:
    base, _ = granian_server
    for i, q in enumerate(str_catalogue.test_queries[:20]):
        response = httpx.post(f"{base}/infer", json=request_body(f"u{i}", q, exact=True, k=10), timeout=10)
        assert response.status_code == 200 and response.headers["x-index-version"]
        ids, truth = str_catalogue.brute_force(q[None], 10)
        got = [hit["score"] for hit in response.json()["recommendations"]]
        np.testing.assert_allclose(got, truth[0], rtol=1e-4, atol=1e-4)
    bad = httpx.post(f"{base}/infer", json={"name": "u", "vector": [1.0]}, timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["vector"]
    assert "recsys_http_requests_total" in httpx.get(f"{base}/metrics", timeout=10).text


def test_granian_stops_on_sigterm_with_its_workers(hnsw_root: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [*serve_command(), "--index-root", str(hnsw_root), "--port", str(port), "--workers", str(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_SERVER": "granian"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    while log_path.read_text(errors="replace").count("serving index") < WORKERS:
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.1)
    children = [p for p in Path("/proc").glob("[0-9]*") if _parent_of(p) == process.pid]
    assert children, "granian started no worker processes"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while any(child.exists() for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(child.exists() for child in children)


def _parent_of(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
