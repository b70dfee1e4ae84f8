"""A uvicorn Config whose listening socket says it is TCP, so accepted connections get TCP_NODELAY.

Lives in its own module (not api/__main__.py): with --workers N the config is pickled to spawned workers, and a
class defined in a package's __main__ cannot be unpickled there when the server is started as `python -m api`.
"""

from __future__ import annotations

import socket

import uvicorn


class TcpConfig(uvicorn.Config):
    """uvicorn (0.54) binds the socket for --workers N with proto 0; accepted sockets inherit it, and asyncio only
    sets TCP_NODELAY when proto is IPPROTO_TCP, so every keep-alive response after the first waited ~40 ms for a
    delayed ACK (measured here: 90 req/s, p50 44 ms with 2 workers; uvicorn issue #3149)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock
