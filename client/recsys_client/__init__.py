"""recsys_client: a thin typed client of the retrieval API (sync and asyncio, on httpx).

    from recsys_client import RecsysClient
    with RecsysClient("http://127.0.0.1:5000", api_key=None) as client:
        client.infer("mike", vector, k=5)["recommendations"]
        client.recommend_many([(name, vector), ...])   # any number of users, split under the batch limit

Retries 503 (the server is full) honouring Retry-After, and failed connections, with exponential backoff."""

from __future__ import annotations

from recsys_client._core import ApiError, Limits, RetryPolicy
from recsys_client.aio import AsyncRecsysClient
from recsys_client.models import Group, IndexInfo, Recommendation, Recommendations, UserQuery
from recsys_client.sync import RecsysClient

__all__ = [
    "ApiError",
    "AsyncRecsysClient",
    "Group",
    "IndexInfo",
    "Limits",
    "Recommendation",
    "Recommendations",
    "RecsysClient",
    "RetryPolicy",
    "UserQuery",
]
