"""A real multi-node Ray cluster on this machine, for the recsys-score Ray test and benchmark: `ray start --head`
plus `ray start --address` per extra node, each with its own CPU count, all in the foreground (`--block`) so that
stopping them (SIGTERM, by pid) also stops every process they started — never `ray stop`, which would stop other
users' Ray processes on the machine too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive_nodes(address: str) -> int:
    status = subprocess.run([str(RAY), "status", "--address", address], env=ENV, capture_output=True, text=True)
    active = status.stdout.split("Active:")[-1].split("Pending:")[0] if "Active:" in status.stdout else ""
    return sum(1 for line in active.splitlines() if "node_" in line)


class LocalRayCluster:
    """`with LocalRayCluster(nodes=2, cpus=1) as cluster:` → cluster.address (host:port) of a running cluster."""

    def __init__(self, nodes: int = 2, cpus: int = 1, timeout: float = 120.0) -> None:
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths stay < 108 bytes
        self.address = f"127.0.0.1:{_free_port()}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start(self, arguments: list[str]) -> None:
        log = self.temp / f"node{len(self.processes)}.log"
        common = ["--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1", "--block"]
        common += ["--dashboard-agent-listen-port", str(_free_port())]
        with open(log, "wb") as out:
            command = [str(RAY), "start", *arguments, *common]
            process = subprocess.Popen(command, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + self.timeout
        while alive_nodes(self.address) < len(self.processes):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {len(self.processes) - 1} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(1)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __enter__(self) -> LocalRayCluster:
        try:
            port = self.address.rsplit(":", 1)[1]
            # A free port instead of Ray's fixed default (8265), which another cluster here may hold.
            ports = ["--dashboard-port", str(_free_port())]
            self._start(["--head", "--port", port, "--include-dashboard=false", *ports, "--temp-dir", str(self.temp)])
            for _ in range(self.nodes - 1):
                self._start(["--address", self.address])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to each node (workers first), SIGKILL to a node's process group if it does not stop in 30 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
