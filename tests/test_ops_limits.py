"""Overload protection: 503 + Retry-After at once when a worker is full, 504 past the time budget, abandoned work
keeps its slot until it really ends, probes stay open, and the service recovers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ops_helpers import metric_value
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from api.limits import LimitsMiddleware
from api.metrics import Metrics

ClientFactory = Callable[..., TestClient]


def gated_app(gate: threading.Event, entered: threading.Semaphore, max_concurrency: int, timeout: float) -> Starlette:
    """/slow waits in a worker thread until the gate opens (like a long faiss search); /fast answers at once."""

    async def slow(request: Request) -> Response:
        def wait() -> None:
            entered.release()
            gate.wait(30)

        await run_in_threadpool(wait)
        return JSONResponse({"done": True})

    async def fast(request: Request) -> Response:
        return JSONResponse({"done": True})

    metrics = Metrics(None)
    app = Starlette(
        routes=[Route("/slow", slow), Route("/fast", fast), Route("/healthz", fast), Route("/metrics", fast)],
        middleware=[
            Middleware(
                LimitsMiddleware, max_concurrency=max_concurrency, timeout=timeout, retry_after=3, metrics=metrics
            )
        ],
    )
    app.state.metrics = metrics
    return app


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a thread waiting


def test_full_worker_answers_503_at_once_and_recovers(gate: threading.Event) -> None:
    entered = threading.Semaphore(0)
    app = gated_app(gate, entered, max_concurrency=2, timeout=0)
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(client.get, "/slow") for _ in range(2)]
        for _ in range(2):
            assert entered.acquire(timeout=10)
        # Both slots are held by requests that cannot finish until the gate opens: an answer now is, by
        # construction, given at once (a queued request would wait for the gate and then get 200).
        response = client.get("/fast")
        assert response.status_code == 503
        assert not any(f.done() for f in slow), "the slow requests were still running when the 503 came"
        assert response.headers["retry-after"] == "3"
        assert "overloaded" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200  # probes are never refused
        gate.set()
        assert [f.result().status_code for f in slow] == [200, 200]
        assert client.get("/fast").status_code == 200
        text = app.state.metrics.render().decode()
        assert metric_value(text, "recsys_rejected_requests_total", reason="concurrency") == 1
        assert metric_value(text, "recsys_in_flight_requests") == 0


async def call(app: Starlette, path: str) -> tuple[asyncio.Task[None], asyncio.Event, list[Message]]:
    """Start one GET on the raw ASGI app (as uvicorn would: the response may complete before the app returns)."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [],
        "client": ("test", 1),
        "server": ("test", 80),
    }
    messages: list[Message] = []
    complete = asyncio.Event()

    async def receive() -> Message:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    return asyncio.create_task(app(scope, receive, send)), complete, messages


def test_time_budget_answers_504_and_the_abandoned_search_keeps_its_slot(gate: threading.Event) -> None:
    entered = threading.Semaphore(0)
    app = gated_app(gate, entered, max_concurrency=1, timeout=0.2)

    async def scenario() -> None:
        started = time.perf_counter()
        slow, answered, messages = await call(app, "/slow")
        await asyncio.wait_for(answered.wait(), 60)  # the gate stays shut: only the time budget can answer
        assert time.perf_counter() - started >= 0.2, "answered before the budget ran out"
        assert messages[0]["status"] == 504 and (b"retry-after", b"3") in messages[0]["headers"]
        assert b"time budget of 0.2s" in messages[1]["body"]
        assert not slow.done(), "the search is still running in its thread"
        fast, _, fast_messages = await call(app, "/fast")
        await fast
        assert fast_messages[0]["status"] == 503, "the abandoned search must keep its slot"
        gate.set()
        await asyncio.wait_for(slow, 10)
        assert len(messages) == 2, "nothing of the abandoned response may reach the client"
        fast, _, fast_messages = await call(app, "/fast")
        await fast
        assert fast_messages[0]["status"] == 200

    asyncio.run(scenario())
    text = app.state.metrics.render().decode()
    assert metric_value(text, "recsys_rejected_requests_total", reason="timeout") == 1
    assert metric_value(text, "recsys_in_flight_requests") == 0


def test_the_real_app_answers_504_past_its_budget(client_factory: ClientFactory, hnsw_root: Path) -> None:
    client = client_factory(hnsw_root, request_timeout=0.001, reload_interval=0.0)
    queries = np.random.default_rng(0).standard_normal((1000, 16))
    response = client.post("/batch", json=[{"name": "u", "vector": q.tolist(), "exact": True} for q in queries])
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert client.get("/readyz").status_code == 200  # exempt from the budget


@pytest.mark.parametrize(
    ("change", "status"),
    [({"k": 101}, 422), ({"params": {"efSearch": 2049}}, 422), ({"vector": [0.5] * 16 * 400}, 413)],
)
def test_size_and_effort_limits(
    client_factory: ClientFactory, hnsw_root: Path, change: dict[str, object], status: int
) -> None:
    """max k, max search effort and max body bytes are checked before any search (more in test_api_errors.py)."""
    client = client_factory(hnsw_root, max_body_bytes=16 * 1024, reload_interval=0.0)
    response = client.post("/infer", json={"name": "u", "vector": [0.5] * 16, **change})
    assert response.status_code == status
