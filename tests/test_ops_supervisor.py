"""Workers end with their supervisor: SIGKILL the supervisor of a real 2-worker `recsys-serve` (nothing of it can
run: no handler, no cleanup) and its workers must exit on their own instead of serving on as orphans."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from ops_helpers import build_version, running_server

from api.worker_lifetime import exit_with_parent


def alive(pid: int) -> bool:
    """Running, or stopped but not yet reaped; a zombie (exited, waiting for its new parent to reap it) is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "indexes"
    build_version(root, "k", seed=3)
    with running_server(root, tmp_path, workers=2) as server:
        workers = server.workers()
        assert len(workers) == 2 and server.process.pid not in workers
        assert httpx.post(f"{server.base}/infer", json={"name": "u", "vector": [0.5] * 8}).status_code == 200
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(timeout=30) == -signal.SIGKILL
        try:
            assert wait_until(lambda: not any(alive(pid) for pid in workers), 60), "workers outlived the supervisor"
        finally:
            for pid in workers:  # never leave an orphan behind, whatever the outcome
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base}/healthz", timeout=5)
    assert "Application shutdown complete" in server.log(), "the workers did not stop gracefully (SIGTERM)"


def test_no_parent_no_death_signal() -> None:
    """The test process is no multiprocessing child: a single-process server must not die with its shell."""
    assert exit_with_parent() is False
