"""What the sync and async clients share: request bodies, the retry policy, error decoding and batch splitting.
No I/O here, so both clients send exactly the same requests and read answers the same way."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = frozenset({503})  # the server's "full, retry after N s" (RECSYS_MAX_CONCURRENCY); 504 is not retried


class ApiError(Exception):
    """A non-2xx answer (after any retries): the status and the server's JSON `detail` (str, or a list of
    {"loc", "msg", "type"} problems for 422/404)."""

    def __init__(self, status: int, detail: Any, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RetryPolicy:
    """Parameters: attempts — tries in all (1: never retry); backoff — first wait in seconds, doubled at each
    retry; max_wait — cap on any one wait, including a server's Retry-After. Retried: HTTP 503 and failures to
    connect (the request never reached a server, so repeating it is safe)."""

    attempts: int = 4
    backoff: float = 0.2
    max_wait: float = 10.0

    def wait(self, retry: int, retry_after: str | None) -> float:
        """Seconds before retry number `retry` (0-based): the server's Retry-After when it gave one, else backoff."""
        seconds = float(self.backoff * 2**retry)
        given = parse_retry_after(retry_after)
        if given is not None:
            seconds = given
        return max(0.0, min(seconds, self.max_wait))


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def headers(api_key: str | None) -> dict[str, str]:
    found = {"accept": "application/json", "user-agent": "recsys-client"}
    if api_key:
        found["authorization"] = f"Bearer {api_key}"
    return found


def as_floats(vector: Iterable[float]) -> list[float]:
    """Lists, tuples and numpy arrays alike (no numpy needed here)."""
    return [float(x) for x in vector]


def user_body(name: str, vector: Iterable[float], k: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "vector": as_floats(vector), **options}
    if k is not None:
        body["k"] = k
    return body


def similar_body(product_id: str | int, k: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": product_id, **options}
    if k is not None:
        body["k"] = k
    return body


def decode(response: httpx.Response) -> Any:
    """The JSON answer, or ApiError with the server's detail."""
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    raise ApiError(response.status_code, detail, response.request.method, response.request.url.path)


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Limits:
    """The server's batch limits (GET /index → limits): items per batch and bytes per body."""

    max_batch: int
    max_body_bytes: int

    @classmethod
    def from_index(cls, info: Mapping[str, Any]) -> Limits:
        limits = info.get("limits", {})
        return cls(int(limits.get("max_batch", 1000)), int(limits.get("max_body_bytes", 16 * 2**20)))


def split_batches(items: Sequence[Mapping[str, Any]], limits: Limits, batch_size: int | None = None) -> Iterator[bytes]:
    """Encoded JSON arrays of consecutive items, each within max_batch items (or batch_size, if smaller) and
    max_body_bytes. An item too large for a body on its own is sent alone (the server answers 413 for it)."""
    per_batch = min(limits.max_batch, batch_size or limits.max_batch)
    if per_batch < 1:
        raise ValueError(f"batch_size {batch_size}: must be at least 1")
    chunk: list[bytes] = []
    size = 2  # the brackets
    for item in items:
        encoded = encode(item)
        if chunk and (len(chunk) >= per_batch or size + 1 + len(encoded) > limits.max_body_bytes):
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 2
        size += len(encoded) + (1 if chunk else 0)  # a comma before every item but the first
        chunk.append(encoded)
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"
