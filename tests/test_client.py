"""recsys_client against a real `recsys-serve` (started here on a free port): answers equal the exact top-k, large
user lists are split under the server's batch limit and come back in order, 503 is retried after Retry-After, API
keys are sent; the same for the asyncio client."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from ops_helpers import Server, Version, build_version, metric_value, running_server
from recsys_client import ApiError, AsyncRecsysClient, Limits, RecsysClient, RetryPolicy
from recsys_client._core import parse_retry_after, split_batches

KEY = "client-key-0123456789abcdef"
MAX_BATCH = 100


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Version:
    return build_version(tmp_path_factory.mktemp("client") / "indexes", "c", seed=11)


@pytest.fixture(scope="module")
def server(version: Version, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, keys on, small batches, one request in progress at most (so 503 can be provoked)."""
    env = {
        "RECSYS_API_KEYS": KEY,
        "RECSYS_MAX_BATCH": str(MAX_BATCH),
        "RECSYS_MAX_CONCURRENCY": "1",
        "RECSYS_RETRY_AFTER": "1",
    }
    with running_server(version.dir.parent, tmp_path_factory.mktemp("client-logs"), workers=1, **env) as running:
        yield running


def users(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    queries = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return [(f"u{i}", q) for i, q in enumerate(queries)]


def batches_counted(server: Server) -> float:
    return metric_value(httpx.get(f"{server.base}/metrics").text, "recsys_batch_size_count")


def test_infer_similar_and_index(server: Server, version: Version) -> None:
    with RecsysClient(server.base, api_key=KEY) as client:
        assert client.ready()
        info = client.index()
        assert info["dim"] == 8 and info["version"] == version.name and info["limits"]["max_batch"] == MAX_BATCH
        (name, query), *_ = users(1)
        answer = client.infer(name, query, k=5)
        assert answer["name"] == "u0"
        assert version.is_exact_top(query, [r["id"] for r in answer["recommendations"]], 5)
        similar = client.similar(version.ids[3], k=4, exact=True)
        assert len(similar["recommendations"]) == 4 and version.ids[3] not in [
            r["id"] for r in similar["recommendations"]
        ]


def test_recommend_many_splits_under_the_batch_limit_and_keeps_order(server: Server, version: Version) -> None:
    many = users(2 * MAX_BATCH + 37, seed=1)
    before = batches_counted(server)
    with RecsysClient(server.base, api_key=KEY) as client:
        answers = client.recommend_many(many, k=3, exact=True)
    assert batches_counted(server) - before == 3  # 100 + 100 + 37
    assert [a["name"] for a in answers] == [name for name, _ in many]
    for (_, query), answer in zip(many, answers, strict=True):
        assert version.is_exact_top(query, [r["id"] for r in answer["recommendations"]], 3)


def test_a_bad_request_raises_api_error_with_the_servers_detail(server: Server) -> None:
    with RecsysClient(server.base, api_key=KEY) as client:
        with pytest.raises(ApiError) as caught:
            client.infer("u", [0.5] * 7)
    assert caught.value.status == 422
    assert "dimension" in json.dumps(caught.value.detail)


def test_keys_are_sent(server: Server) -> None:
    with RecsysClient(server.base) as anonymous, pytest.raises(ApiError) as caught:
        anonymous.infer("u", [0.5] * 8)
    assert caught.value.status == 401
    with RecsysClient(server.base, api_key="wrong-key-000000000000") as wrong, pytest.raises(ApiError) as caught:
        wrong.infer("u", [0.5] * 8)
    assert caught.value.status == 401


class HeldSlot:
    """Occupies the server's only request slot: a request whose body is half sent (the app has it, waiting for the
    rest). release() sends the rest, so the slot frees once it is answered."""

    def __init__(self, server: Server) -> None:
        host, port = server.base.removeprefix("http://").split(":")
        self.body = json.dumps({"name": "held", "vector": [0.5] * 8}).encode()
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-API-Key: {KEY}\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + self.body[:5])
        metrics = f"{server.base}/metrics"
        for _ in range(600):
            if metric_value(httpx.get(metrics).text, "recsys_in_flight_requests") == 1:
                break
            asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("the held request never reached the app")

    def release(self) -> None:
        self.sock.sendall(self.body[5:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        self.sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_503_is_retried_after_retry_after(server: Server, version: Version) -> None:
    held = HeldSlot(server)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the server answered 503: free the slot, then "wait"
        waits.append(seconds)
        held.release()

    with RecsysClient(server.base, api_key=KEY, sleep=sleep) as client:
        answer = client.infer("u", [0.5] * 8, k=2)
    assert waits == [1.0], "one 503, waited the server's Retry-After: 1"
    assert len(answer["recommendations"]) == 2


def test_503_after_the_last_attempt_raises(server: Server) -> None:
    held = HeldSlot(server)
    waits: list[float] = []
    try:
        with RecsysClient(server.base, api_key=KEY, sleep=waits.append, retry=RetryPolicy(attempts=3)) as client:
            with pytest.raises(ApiError) as caught:
                client.infer("u", [0.5] * 8)
    finally:
        held.release()
    assert caught.value.status == 503 and "overloaded" in str(caught.value.detail)
    assert waits == [1.0, 1.0]


def test_async_client(server: Server, version: Version) -> None:
    held = HeldSlot(server)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.to_thread(held.release)

    async def main() -> None:
        async with AsyncRecsysClient(server.base, api_key=KEY, sleep=sleep) as client:
            assert await client.ready()
            first = await client.infer("u", [0.5] * 8, k=2)  # 503 once: the slot is held
            assert waits == [1.0] and len(first["recommendations"]) == 2
            many = users(MAX_BATCH + 1, seed=2)
            before = batches_counted(server)
            answers = await client.recommend_many(many, k=3, exact=True)
            assert batches_counted(server) - before == 2
            for (name, query), answer in zip(many, answers, strict=True):
                assert answer["name"] == name
                assert version.is_exact_top(query, [r["id"] for r in answer["recommendations"]], 3)
            assert len((await client.similar(version.ids[0], k=3))["recommendations"]) == 3

    asyncio.run(main())


def test_connection_failures_are_retried_then_raised(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, backoff=0.5)
    with RecsysClient(f"http://127.0.0.1:{port}", sleep=waits.append, retry=policy) as client:
        with pytest.raises(httpx.ConnectError):
            client.index()
        assert not client.ready()
    assert waits == [0.5, 1.0]


def test_batches_respect_the_body_limit_too() -> None:
    items = [{"name": f"u{i}", "vector": [0.25] * 8} for i in range(10)]
    one = len(json.dumps(items[0], separators=(",", ":")))
    bodies = list(split_batches(items, Limits(max_batch=100, max_body_bytes=2 + 3 * one + 2)))
    assert [len(json.loads(body)) for body in bodies] == [3, 3, 3, 1]
    assert [item for body in bodies for item in json.loads(body)] == items
    assert [len(json.loads(b)) for b in split_batches(items, Limits(100, 10**6), batch_size=4)] == [4, 4, 2]


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_minute = parse_retry_after(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 50 < in_a_minute <= 60
    policy = RetryPolicy(backoff=0.1, max_wait=3)
    assert policy.wait(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past: at once
    assert [policy.wait(n, None) for n in range(3)] == [0.1, 0.2, 0.4]
    assert policy.wait(0, "120") == 3  # capped
