"""Helpers of the operations tests: small index versions whose answers tell them apart, corrupt copies, a real
`recsys-serve` process, and Prometheus text parsing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings
from index_format import layout

REPO = Path(__file__).resolve().parents[1]
F32 = npt.NDArray[np.float32]
START_TIMEOUT = 60.0
TIE_RTOL = 1e-5  # float32 scores within this relative distance of each other count as tied


@dataclass(frozen=True)
class Version:
    """One published version: its directory, and the vectors and ids it was built from (exact answers)."""

    dir: Path
    tag: str  # every id of this version starts with "<tag>-"
    ids: list[str]
    vectors: F32

    @property
    def name(self) -> str:
        return self.dir.name

    def exact_top(self, query: F32, k: int) -> list[str]:
        scores = self.vectors.astype(np.float64) @ query.astype(np.float64)
        return [self.ids[i] for i in np.argsort(-scores, kind="stable")[:k]]

    def is_exact_top(self, query: F32, ids: list[str], k: int) -> bool:
        """Whether `ids` is this version's exact top-k for `query`, tie-aware: the server ranks float32 scores, this
        recomputes in float64, so near-equal scores may come in either order (or swap at the k-th place)."""
        row_of = {external: row for row, external in enumerate(self.ids)}
        if len(ids) != k or len(set(ids)) != k or any(i not in row_of for i in ids):
            return False
        scores = self.vectors.astype(np.float64) @ query.astype(np.float64)
        got = scores[[row_of[i] for i in ids]]
        best = np.sort(scores)[::-1][:k]
        tolerance = TIE_RTOL * np.abs(best) + 1e-6
        return bool(np.all(np.abs(got - best) <= tolerance))


def build_version(root: Path, tag: str, seed: int, n: int = 400, dim: int = 8, kind: str = "flat") -> Version:
    """Build and publish (repoints ROOT/current) a small exact index whose ids all start with `tag`."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"{tag}-p{i}" for i in range(n)]
    version_dir, _ = build(Embeddings(ids=ids, vectors=vectors, metadata={}), root, None, BuildOptions(kind=kind))
    return Version(version_dir, tag, ids, vectors)


def repoint(root: Path, version_dir: Path | str) -> None:
    """Atomically point ROOT/current at a directory (as the builder's publish does)."""
    tmp = root / f".tmp-link-test-{os.getpid()}"
    if os.path.lexists(tmp):
        tmp.unlink()
    os.symlink(Path(version_dir).name, tmp)
    os.replace(tmp, root / layout.CURRENT_LINK)


def publish_corrupt(root: Path, source: Path, how: str, name: str) -> Path:
    """Copy a good version under a new name, damage it, and make it current. how: "flip" (one byte of the faiss
    file changed: same size, wrong sha256) or "truncate" (the faiss file cut in half)."""
    target = root / name
    shutil.copytree(source, target)
    path = target / layout.INDEX_FILE
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    elif how == "truncate":
        data = data[: len(data) // 2]
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))
    repoint(root, target)
    return target


def mapped_files(pid: int | str = "self") -> set[str]:
    """Paths of the files mapped into a process."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found.add(parts[5])
    return found


def maps_inside(directory: Path, pid: int | str = "self") -> set[str]:
    prefix = os.path.realpath(directory) + os.sep
    return {path for path in mapped_files(pid) if path.startswith(prefix)}


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for sample, found, value in metric_samples(text)
        if sample == name and all(found.get(k) == v for k, v in labels.items())
    )


# ---- a real server --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command() -> list[str]:
    script = Path(sys.executable).with_name("recsys-serve")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api"]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        """Worker pids (multiprocessing spawn children); the server's own pid with a single worker."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.process.pid and b"spawn_main" in command:
                found.append(int(stat.parent.name))
        return sorted(found) or [self.process.pid]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


@contextmanager
def running_server(
    root: Path, log_dir: Path, workers: int, command: list[str] | None = None, **env: str
) -> Iterator[Server]:
    """`recsys-serve` (or `command`, with its options) on a free loopback port, ready (every worker loaded) on entry,
    stopped (SIGTERM) on exit."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    where = ["--index-root", str(root), "--port", str(port), "--workers", str(workers)]
    command = [*(command or serve_command()), *where]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while server.log().count("Application startup complete") < workers:
            if process.poll() is not None:
                raise RuntimeError(f"recsys-serve exited with {process.returncode}:\n{server.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"recsys-serve not ready after {START_TIMEOUT}s:\n{server.log()}")
            time.sleep(0.1)
        httpx.get(f"{server.base}/readyz", timeout=5).raise_for_status()
        yield server
    finally:
        server.stop()
