"""The real server: `recsys-serve` with 2 uvicorn workers on a free loopback port, queried over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import Catalogue, assert_exact, recall, request_body
from ops_helpers import Server, mapped_files, running_server, serve_command

from index_format import layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(hnsw_root, tmp_path_factory.mktemp("server"), workers=2) as running:
        yield running


def test_two_workers_serve_the_current_version(server: Server, hnsw_root: Path) -> None:
    assert len(server.workers()) == 2
    info = httpx.get(f"{server.base}/index").json()
    assert info["version"] == layout.resolve_current(hnsw_root).name


def maps(pid: int) -> str:
    return "\n".join(mapped_files(pid))


def test_only_workers_load_faiss(server: Server) -> None:
    """The supervisor checks the index in a child process (api/preflight.py), so it never holds faiss or numpy."""
    workers = server.workers()
    assert workers and all("_swigfaiss" in maps(pid) for pid in workers)
    supervisor = maps(server.process.pid)
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


def listeners_per_worker(server: Server) -> list[set[str]]:
    listening = listening_inodes(int(server.base.rsplit(":", 1)[1]))
    return [socket_inodes(worker) & listening for worker in server.workers()]


def test_each_worker_listens_on_its_own_socket(server: Server) -> None:
    """SO_REUSEPORT (api/tcp_config.py): the kernel spreads connections over the workers' sockets."""
    per_worker = listeners_per_worker(server)
    assert len(per_worker) == 2 and all(len(inodes) == 1 for inodes in per_worker)
    assert per_worker[0] != per_worker[1]


def test_exact_over_http_equals_brute_force(server: Server, str_catalogue: Catalogue) -> None:
    with httpx.Client(base_url=server.base) as client:
        for i, query in enumerate(str_catalogue.test_queries[:100]):
            response = client.post("/infer", json=request_body(f"u{i}", query, exact=True))
            assert response.status_code == 200
            assert_exact(str_catalogue, query, response.json()["recommendations"], 10)


def test_ann_recall_over_http_meets_the_stated_bound(server: Server, str_catalogue: Catalogue) -> None:
    """Bound: the manifest's held-out recall@10 minus 0.03, over 300 queries the builder never saw."""
    queries = str_catalogue.test_queries[:300]
    with httpx.Client(base_url=server.base) as client:
        stated = client.get("/index").json()["recall_at_k"]
        answers = [client.post("/infer", json=request_body(f"u{i}", q)).json() for i, q in enumerate(queries)]
        batch = client.post("/batch", json=[request_body(f"u{i}", q) for i, q in enumerate(queries)]).json()
    found = [recall(str_catalogue, q, a["recommendations"], 10) for q, a in zip(queries, answers, strict=True)]
    assert float(np.mean(found)) >= stated - 0.03
    assert batch == answers


def test_concurrent_clients_and_bad_requests_leave_the_server_up(server: Server, str_catalogue: Catalogue) -> None:
    base, process = server.base, server.process
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
    with running_server(hnsw_root, tmp_path, workers=1) as single:
        assert single.stop() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in single.log()


def test_python_dash_m_api_with_two_workers(hnsw_root: Path, tmp_path: Path) -> None:
    """`python -m api --workers 2` (no console script): the workers must unpickle the uvicorn config, so it cannot
    be a class defined in api/__main__.py. Also runs the pure-Python stack (h11, asyncio) that --http/--loop pick,
    with one listening socket shared by the workers (RECSYS_REUSE_PORT=0)."""
    command = [sys.executable, "-m", "api", "--http", "h11", "--loop", "asyncio"]
    with running_server(hnsw_root, tmp_path, 2, command=command, RECSYS_REUSE_PORT="0") as dash_m:
        assert len(dash_m.workers()) == 2
        shared = listeners_per_worker(dash_m)
        assert len(shared) == 2 and len(shared[0]) == 1 and shared[0] == shared[1]
        query = {"name": "u", "vector": [0.1] * layout.read_manifest(layout.resolve_current(hnsw_root)).dim}
        answer = httpx.post(f"{dash_m.base}/infer", json=query, timeout=10.0)
        assert answer.status_code == 200 and len(answer.json()["recommendations"]) == 10
        assert dash_m.stop() == 0


def test_supervisor_exits_0_on_sigterm(server: Server) -> None:
    """Stops the shared 2-worker server and checks its workers are gone too (the tests after it start their own)."""
    workers = server.workers()
    assert len(workers) == 2
    assert server.stop() == 0
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
