"""api/http_protocol.py: what the protocol writes in one event-loop turn reaches the socket in one write, in order,
and nothing is held past the turn, a close, or FLUSH_BYTES; over a real server, pipelined requests get whole
responses, in order, on a connection that stays usable."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from ops_helpers import Server, running_server

from api.http_protocol import FLUSH_BYTES, CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name == "peername" else None


def test_writes_of_one_turn_leave_together_and_in_order() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(bytearray(b"body"))
        assert real.writes == [] and transport.get_write_buffer_size() == 23
        await asyncio.sleep(0)  # the end of the turn
        first = list(real.writes)
        transport.write(b"second")
        transport.close()  # a close writes what is held first
        return first, real.writes

    first, after_close = asyncio.run(scenario())
    assert first == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert after_close == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"second"]


def test_large_writes_are_not_held() -> None:
    async def scenario() -> list[bytes]:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"h")
        transport.write(b"x" * FLUSH_BYTES)
        held_after_large = list(real.writes)
        await asyncio.sleep(0)
        assert real.writes == held_after_large  # nothing left for the scheduled flush
        return held_after_large

    assert asyncio.run(scenario()) == [b"h" + b"x" * FLUSH_BYTES]


def test_other_transport_calls_reach_the_real_transport() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = CoalescingTransport(RecordingTransport(), loop)  # type: ignore[arg-type]
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    finally:
        loop.close()


@pytest.fixture(scope="module")
def server(hnsw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(hnsw_root, tmp_path_factory.mktemp("protocol"), workers=1) as running:
        yield running


def read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """`count` HTTP/1.1 responses (status line, body) read off a keep-alive socket (content-length bodies)."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
        while len(data) < length:
            data += sock.recv(65536)
        out.append((lines[0], data[:length]))
        data = data[length:]
    return out


def test_pipelined_requests_get_whole_responses_in_order(server: Server, str_catalogue) -> None:  # type: ignore[no-untyped-def]
    port = int(server.base.rsplit(":", 1)[1])
    bodies = [
        orjson.dumps({"name": f"u{i}", "vector": [float(v) for v in str_catalogue.test_queries[i]], "k": k})
        for i, k in enumerate((1, 100, 10))
    ]
    requests = b"".join(
        b"POST /infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
        for body in bodies
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests)  # three requests in one packet: three responses, in order, each whole
        responses = read_responses(sock, 3)
        for (status, body), k, i in zip(responses, (1, 100, 10), range(3), strict=True):
            assert status == b"HTTP/1.1 200 OK"
            answer = orjson.loads(body)
            assert answer["name"] == f"u{i}" and len(answer["recommendations"]) == k
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")  # the connection stays usable
        assert read_responses(sock, 1)[0][0] == b"HTTP/1.1 200 OK"
