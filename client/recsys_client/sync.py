"""The blocking client (httpx.Client): one connection pool, keep-alive, retries on 503."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from recsys_client import _core
from recsys_client._core import Limits, RetryPolicy
from recsys_client.models import IndexInfo, Recommendations, UserQuery


class RecsysClient:
    """Parameters: base_url — e.g. "http://127.0.0.1:5000"; api_key — sent as `Authorization: Bearer` (when the
    server has keys on); timeout — seconds per request; retry — RetryPolicy; sleep and transport — for tests.

    Methods mirror the endpoints: infer, batch, recommend_many (any number of users, split under the server's
    batch limits), similar, similar_batch, index, ready."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = _core.DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry
        self._sleep = sleep
        self._limits: Limits | None = None
        self._http = httpx.Client(
            base_url=base_url, headers=_core.headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> RecsysClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, content: bytes | None = None) -> Any:
        extra = {"content-type": "application/json"} if content is not None else None
        for retry in range(self.retry.attempts):
            last = retry == self.retry.attempts - 1
            try:
                response = self._http.request(method, path, content=content, headers=extra)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:
                    raise
                self._sleep(self.retry.wait(retry, None))
                continue
            if response.status_code in _core.RETRY_STATUSES and not last:
                self._sleep(self.retry.wait(retry, response.headers.get("retry-after")))
                continue
            return _core.decode(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def infer(self, name: str, vector: Iterable[float], k: int | None = None, **options: Any) -> Recommendations:
        """POST /infer. options: exact, filter, exclude, params, group_by, group_size, groups."""
        result: Recommendations = self._send("POST", "/infer", _core.encode(_core.user_body(name, vector, k, options)))
        return result

    def batch(self, items: Sequence[Mapping[str, Any]]) -> list[Recommendations]:
        """POST /batch with /infer bodies as given (at most the server's max_batch)."""
        result: list[Recommendations] = self._send("POST", "/batch", _core.encode(list(items)))
        return result

    def recommend_many(
        self, users: Iterable[UserQuery], k: int | None = None, batch_size: int | None = None, **options: Any
    ) -> list[Recommendations]:
        """Recommendations for any number of (name, vector) users, in order: sent as /batch requests each within the
        server's max_batch and max_body_bytes (read once from GET /index), or batch_size users if smaller."""
        items = [_core.user_body(name, vector, k, options) for name, vector in users]
        answers: list[Recommendations] = []
        for body in _core.split_batches(items, self.limits(), batch_size):
            answers.extend(self._send("POST", "/batch", body))
        return answers

    def similar(self, product_id: str | int, k: int | None = None, **options: Any) -> Recommendations:
        """POST /similar. options: metric ("ip" or "cosine"), exact, filter, exclude, params."""
        result: Recommendations = self._send(
            "POST", "/similar", _core.encode(_core.similar_body(product_id, k, options))
        )
        return result

    def similar_batch(self, items: Sequence[Mapping[str, Any]]) -> list[Recommendations]:
        result: list[Recommendations] = self._send("POST", "/similar/batch", _core.encode(list(items)))
        return result

    def index(self) -> IndexInfo:
        """GET /index: the served version, dim, kind, categories, limits..."""
        result: IndexInfo = self._send("GET", "/index")
        return result

    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_index(self.index())
        return self._limits

    def ready(self) -> bool:
        """GET /readyz: whether the server has its index loaded and warm (no retries)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False
