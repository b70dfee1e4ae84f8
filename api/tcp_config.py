"""Listening sockets for uvicorn workers: TCP_NODELAY, and one SO_REUSEPORT socket per worker.

Lives in its own module (not api/__main__.py): with --workers N the config and the worker processes are pickled to
spawned workers, and a class defined in a package's __main__ cannot be unpickled there when the server is started
as `python -m api`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
import uvicorn.supervisors.multiprocess as multiprocess

from api.worker_lifetime import exit_with_parent

LOG = logging.getLogger("uvicorn.error")

REUSE_PORT_AVAILABLE = hasattr(socket, "SO_REUSEPORT") and hasattr(getattr(multiprocess, "Process", None), "target")


class TcpConfig(uvicorn.Config):
    """uvicorn (0.54) binds the socket for --workers N with proto 0; accepted sockets inherit it, and asyncio only
    sets TCP_NODELAY when proto is IPPROTO_TCP, so every keep-alive response after the first waited ~40 ms for a
    delayed ACK (measured here: 90 req/s, p50 44 ms with 2 workers; uvicorn issue #3149).

    reuse_port: bind with SO_REUSEPORT and do not listen here; each worker started under `reuse_port_workers()`
    listens on a socket of its own bound to the same address, and the kernel spreads new connections over them by
    hash. With one shared socket the first worker to wake accepts a whole burst: wrk's 64 connections split 49/15,
    53/11, 61/3, 11/53, 15/49 between 2 workers (gowalla /infer p99 20–26 ms); with a socket per worker 26/38,
    35/29, 31/33, 30/34, 41/23 (p99 16–20 ms). The price: connections still waiting in a dying worker's own accept
    queue are reset, where a shared socket would keep them for the other workers."""

    def __init__(self, *args: Any, reuse_port: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reuse_port = reuse_port and REUSE_PORT_AVAILABLE and self.uds is None and self.fd is None

    def load(self) -> None:
        exit_with_parent()  # runs in each worker (uvicorn loads the app there); a no-op in a single-process server
        super().load()

    def bind_socket(self) -> socket.socket:
        if self.reuse_port:
            return self._bind_reuse_port()
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock

    def _bind_reuse_port(self) -> socket.socket:
        """SO_REUSEPORT lets a second server of the same user bind a port that one already serves, and the two would
        silently share its connections: refuse a port something already listens on, as a plain bind would."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.port and someone_listens(family, self.host, self.port):
            LOG.error(
                "[Errno %d] address already in use: something listens on %s:%d", errno.EADDRINUSE, self.host, self.port
            )
            sys.exit(1)
        try:
            sock = reuse_port_socket(family, (self.host, self.port))
        except OSError as exc:
            LOG.error("%s", exc)
            sys.exit(1)
        host, port = sock.getsockname()[:2]
        LOG.info("Uvicorn running on http://%s:%d with one listening socket per worker (SO_REUSEPORT)", host, port)
        return sock


def someone_listens(family: int, host: str, port: int) -> bool:
    """Whether a connection to host:port (loopback for a wildcard host) is accepted."""
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((wildcard.get(host, host), port)) == 0


def reuse_port_socket(family: int, address: tuple[str, int]) -> socket.socket:
    """A TCP socket bound to address with SO_REUSEPORT (not listening yet), inheritable by spawned workers."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


class ReusePortProcess(multiprocess.Process):
    """A uvicorn worker that swaps each socket it is given for a SO_REUSEPORT twin bound to the same address."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover (runs in the worker)
        twins = []
        for shared in sockets or []:
            twins.append(reuse_port_socket(shared.family, shared.getsockname()[:2]))
            shared.close()
        super().target(twins)


@contextlib.contextmanager
def reuse_port_workers(config: TcpConfig) -> Iterator[None]:
    """While open, uvicorn's supervisor starts `ReusePortProcess` workers (when config.reuse_port is on)."""
    if not config.reuse_port:
        yield
        return
    original = multiprocess.Process
    multiprocess.Process = ReusePortProcess  # type: ignore[misc]  # Multiprocess looks it up in its module
    try:
        yield
    finally:
        multiprocess.Process = original  # type: ignore[misc]
