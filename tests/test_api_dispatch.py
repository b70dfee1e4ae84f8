"""Which requests are searched on the event loop and which in the thread pool (the search plan's `inline`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_helpers import TINY_CATEGORY, Catalogue, request_body
from starlette.testclient import TestClient

import api.endpoints
import api.index_state

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def pool_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = api.endpoints.run_in_threadpool

    async def spy(func: Callable[..., Any], *args: Any) -> Any:
        calls.append(func.__name__)
        return await original(func, *args)

    monkeypatch.setattr(api.endpoints, "run_in_threadpool", spy)
    return calls


@pytest.mark.parametrize(
    ("options", "inline_work", "pooled"),
    [
        ({}, 4_000_000, False),  # ANN probe
        ({"exact": True}, 4_000_000, False),  # 3,000 × 16 rows scanned: small
        ({"exact": True}, 1_000, True),  # the same scan over the configured work: thread pool
        ({"filter": {"category": [TINY_CATEGORY]}}, 4_000_000, False),  # exact scan of 12 rows
        ({"filter": {"category": ["drinks"]}}, 1_000, True),
    ],
)
def test_light_requests_stay_on_the_loop(
    options: dict[str, Any],
    inline_work: int,
    pooled: bool,
    pool_calls: list[str],
    client_factory: ClientFactory,
    hnsw_root: Path,
    str_catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.index_state, "INLINE_WORK", inline_work)  # the policy is built at index load
    client = client_factory(hnsw_root)
    response = client.post("/infer", json=request_body("a", str_catalogue.test_queries[0], **options))
    assert response.status_code == 200
    assert pool_calls == (["_encode_infer"] if pooled else [])


def test_batches_go_to_the_pool(
    pool_calls: list[str], client_factory: ClientFactory, hnsw_root: Path, str_catalogue: Catalogue
) -> None:
    client = client_factory(hnsw_root)
    items = [request_body(f"u{i}", q) for i, q in enumerate(str_catalogue.test_queries[:3])]
    assert client.post("/batch", json=items).status_code == 200
    assert pool_calls == ["_encode_batch"]
