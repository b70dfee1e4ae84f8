"""The real server: `recsys-serve` with 2 uvicorn workers on a free loopback port, queried over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import Catalogue, assert_exact, recall, request_body
from ops_helpers import free_port, serve_command

from index_format import layout

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def worker_pids(pid: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing spawn children; not its resource tracker)."""
    found = []
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


@pytest.fixture(scope="module")
def server(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    command = [*serve_command(), "--index-root", str(hnsw_root), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"recsys-serve exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"recsys-serve not ready after {START_TIMEOUT}s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_two_workers_serve_the_current_version(server: tuple[str, subprocess.Popen[bytes]], hnsw_root: Path) -> None:
    base, process = server
    assert len(worker_pids(process.pid)) == 2
    info = httpx.get(f"{base}/index").json()
    assert info["version"] == layout.resolve_current(hnsw_root).name


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_only_workers_load_faiss(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """The supervisor checks the index in a child process (api/preflight.py), so it never holds faiss or numpy."""
    base, process = server
    workers = worker_pids(process.pid)
    assert workers and all("_swigfaiss" in mapped_files(pid) for pid in workers)
    supervisor = mapped_files(process.pid)
    assert "_swigfaiss" not in supervisor and "numpy" not in supervisor


def listening_inodes(port: int) -> set[str]:
    """Inodes of the IPv4 sockets listening on port (from /proc/net/tcp: state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def listeners_per_worker(pid: int, port: int) -> list[set[str]]:
    listening = listening_inodes(port)
    return [socket_inodes(worker) & listening for worker in worker_pids(pid)]


def test_each_worker_listens_on_its_own_socket(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """SO_REUSEPORT (api/tcp_config.py): the kernel spreads connections over the workers' sockets."""
    base, process = server
    per_worker = listeners_per_worker(process.pid, int(base.rsplit(":", 1)[1]))
    assert len(per_worker) == 2 and all(len(inodes) == 1 for inodes in per_worker)
    assert per_worker[0] != per_worker[1]


def test_exact_over_http_equals_brute_force(
    server: tuple[str, subprocess.Popen[bytes]], str_catalogue: Catalogue
) -> None:
    base, _ = server
    with httpx.Client(base_url=base) as client:
        for i, query in enumerate(str_catalogue.test_queries[:100]):
            response = client.post("/infer", json=request_body(f"u{i}", query, exact=True))
            assert response.status_code == 200
            assert_exact(str_catalogue, query, response.json()["recommendations"], 10)


def test_ann_recall_over_http_meets_the_stated_bound(
    server: tuple[str, subprocess.Popen[bytes]], str_catalogue: Catalogue
) -> None:
    """Bound: the manifest's held-out recall@10 minus 0.03, over 300 queries the builder never saw."""
    base, _ = server
    queries = str_catalogue.test_queries[:300]
    with httpx.Client(base_url=base) as client:
        stated = client.get("/index").json()["recall_at_k"]
        answers = [client.post("/infer", json=request_body(f"u{i}", q)).json() for i, q in enumerate(queries)]
        batch = client.post("/batch", json=[request_body(f"u{i}", q) for i, q in enumerate(queries)]).json()
    found = [recall(str_catalogue, q, a["recommendations"], 10) for q, a in zip(queries, answers, strict=True)]
    assert float(np.mean(found)) >= stated - 0.03
    assert batch == answers


def test_concurrent_clients_and_bad_requests_leave_the_server_up(
    server: tuple[str, subprocess.Popen[bytes]], str_catalogue: Catalogue
) -> None:
    base, process = server
    bodies = [request_body(f"u{i}", q) for i, q in enumerate(str_catalogue.test_queries[:64])]

    def call(i: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as client:
            if i % 4 == 0:
                return client.post(
                    "/infer", content=b"{not json", headers={"content-type": "application/json"}
                ).status_code
            return client.post("/infer", json=bodies[i]).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(call, range(64)))
    assert statuses.count(400) == 16 and statuses.count(200) == 48
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert process.poll() is None


def test_sigterm_shuts_down_gracefully(hnsw_root: Path, tmp_path: Path) -> None:
    """A separate single-worker server: SIGTERM runs the lifespan shutdown, then uvicorn re-raises the signal
    (exit -15), as it does for any server it runs in-process; a --workers N supervisor exits 0."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [*serve_command(), "--index-root", str(hnsw_root), "--port", str(port), "--workers", "1"]
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_python_dash_m_api_with_two_workers(hnsw_root: Path, tmp_path: Path) -> None:
    """`python -m api --workers 2` (no console script): the workers must unpickle the uvicorn config, so it cannot
    be a class defined in api/__main__.py. Also runs the pure-Python stack (h11, asyncio) that --http/--loop pick,
    with one listening socket shared by the workers (RECSYS_REUSE_PORT=0)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_REUSE_PORT": "0"}
    stack = ["--http", "h11", "--loop", "asyncio"]
    command = [
        sys.executable,
        "-m",
        "api",
        "--index-root",
        str(hnsw_root),
        "--port",
        str(port),
        "--workers",
        "2",
        *stack,
    ]
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = False
        while not ready and time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready, log_path.read_text()[-3000:]
        assert len(worker_pids(process.pid)) == 2
        shared = listeners_per_worker(process.pid, port)
        assert len(shared) == 2 and len(shared[0]) == 1 and shared[0] == shared[1]
        query = {"name": "u", "vector": [0.1] * layout.read_manifest(layout.resolve_current(hnsw_root)).dim}
        answer = httpx.post(f"http://127.0.0.1:{port}/infer", json=query, timeout=10.0)
        assert answer.status_code == 200 and len(answer.json()["recommendations"]) == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_supervisor_exits_0_on_sigterm(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """Runs last in this module: stops the shared 2-worker server and checks its workers are gone too."""
    _, process = server
    workers = worker_pids(process.pid)
    assert len(workers) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_a_port_in_use_is_refused_with_several_workers(hnsw_root: Path) -> None:
    """Another server listening with SO_REUSEPORT (as a second recsys-serve would): binding next to it succeeds,
    so recsys-serve checks for a listener first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [*serve_command(), "--index-root", str(hnsw_root), "--port", str(port), "--workers", "2"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True
        )
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the supervisor and its workers
            process.communicate()
            pytest.fail("recsys-serve started on a port another server listens on")
    assert process.returncode == 1
    assert "address already in use" in stderr and "Traceback" not in stderr
