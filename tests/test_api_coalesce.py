"""RECSYS_COALESCE: concurrent /infer requests are searched together, and each still gets its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from api_helpers import TINY_CATEGORY, Catalogue, assert_same_answer, request_body

from api.app import create_app
from api.endpoints import Endpoints
from api.index_state import load_index
from api.settings import Settings


def run_concurrently(root: Path, bodies: list[dict[str, Any]], coalesce: bool) -> tuple[list[Any], Endpoints]:
    settings = Settings(index_root=root, coalesce=coalesce)
    app = create_app(settings)
    app.state.holder.current = load_index(settings)
    endpoints = next(route.endpoint.__self__ for route in app.routes if getattr(route, "path", "") == "/infer")

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            responses = await asyncio.gather(*(client.post("/infer", json=body) for body in bodies))
        return [(r.status_code, r.json()) for r in responses]

    return asyncio.run(main()), endpoints


def test_concurrent_requests_are_coalesced_and_answered_individually(hnsw_root: Path, str_catalogue: Catalogue) -> None:
    bodies = []
    for i, query in enumerate(str_catalogue.test_queries[:40]):
        options: dict[str, Any] = [{}, {"k": 3}, {"filter": {"category": [TINY_CATEGORY]}}, {"exclude": ["p1", "p2"]}][
            i % 4
        ]
        bodies.append(request_body(f"u{i}", query, **options))
    plain, _ = run_concurrently(hnsw_root, bodies, coalesce=False)
    coalesced, endpoints = run_concurrently(hnsw_root, bodies, coalesce=True)
    assert [status for status, _ in coalesced] == [status for status, _ in plain]
    assert_same_answer([body for _, body in coalesced], [body for _, body in plain])
    assert all(status == 200 for status, _ in coalesced)
    coalescer = endpoints.coalescer
    assert coalescer is not None
    assert coalescer.requests == 40
    assert coalescer.batches < 40
