"""The asyncio client (httpx.AsyncClient): the same methods as RecsysClient, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from recsys_client import _core
from recsys_client._core import Limits, RetryPolicy
from recsys_client.models import IndexInfo, Recommendations, UserQuery


class AsyncRecsysClient:
    """Parameters as RecsysClient; sleep is awaited (asyncio.sleep by default)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = _core.DEFAULT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry
        self._sleep = sleep
        self._limits: Limits | None = None
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_core.headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncRecsysClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, content: bytes | None = None) -> Any:
        extra = {"content-type": "application/json"} if content is not None else None
        for retry in range(self.retry.attempts):
            last = retry == self.retry.attempts - 1
            try:
                response = await self._http.request(method, path, content=content, headers=extra)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:
                    raise
                await self._sleep(self.retry.wait(retry, None))
                continue
            if response.status_code in _core.RETRY_STATUSES and not last:
                await self._sleep(self.retry.wait(retry, response.headers.get("retry-after")))
                continue
            return _core.decode(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def infer(self, name: str, vector: Iterable[float], k: int | None = None, **options: Any) -> Recommendations:
        body = _core.encode(_core.user_body(name, vector, k, options))
        result: Recommendations = await self._send("POST", "/infer", body)
        return result

    async def batch(self, items: Sequence[Mapping[str, Any]]) -> list[Recommendations]:
        result: list[Recommendations] = await self._send("POST", "/batch", _core.encode(list(items)))
        return result

    async def recommend_many(
        self, users: Iterable[UserQuery], k: int | None = None, batch_size: int | None = None, **options: Any
    ) -> list[Recommendations]:
        """As RecsysClient.recommend_many; the batches are sent one after the other (the server parallelises)."""
        items = [_core.user_body(name, vector, k, options) for name, vector in users]
        answers: list[Recommendations] = []
        for body in _core.split_batches(items, await self.limits(), batch_size):
            answers.extend(await self._send("POST", "/batch", body))
        return answers

    async def similar(self, product_id: str | int, k: int | None = None, **options: Any) -> Recommendations:
        body = _core.encode(_core.similar_body(product_id, k, options))
        result: Recommendations = await self._send("POST", "/similar", body)
        return result

    async def similar_batch(self, items: Sequence[Mapping[str, Any]]) -> list[Recommendations]:
        result: list[Recommendations] = await self._send("POST", "/similar/batch", _core.encode(list(items)))
        return result

    async def index(self) -> IndexInfo:
        result: IndexInfo = await self._send("GET", "/index")
        return result

    async def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_index(await self.index())
        return self._limits

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False
