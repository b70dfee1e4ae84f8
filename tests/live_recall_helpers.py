"""Helpers of the live recall tests: the true tie-aware recall of served answers, and reading GET /index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from index_builder.tuning import exact_topk, per_query_recall

F32 = npt.NDArray[np.float32]


def true_recall(vectors: F32, ids: list[str], queries: F32, answers: list[list[str]], k: int) -> float:
    """Mean tie-aware recall@k of the served answers (ids), against exact search over the raw vectors."""
    row_of = {external: row for row, external in enumerate(ids)}
    true_scores, _ = exact_topk(vectors, queries, k)
    found = np.full((len(answers), k), -1, dtype=np.int64)
    for i, answer in enumerate(answers):
        rows = [row_of[a] for a in answer[:k]]
        found[i, : len(rows)] = rows
    return float(per_query_recall(vectors, queries, found, true_scores, k).mean())


def estimate(body: dict[str, Any], kind: str = "ann", effort: str | None = None) -> dict[str, Any] | None:
    """The live estimate of one kind from a GET /index body: at the effort in force, or at `effort`."""
    live = body["live_recall"]
    found = live["estimate"] if effort is None else live["by_effort"].get(effort, {})
    result: dict[str, Any] | None = found.get(kind)
    return result


def effort_of(body: dict[str, Any]) -> dict[str, int]:
    current: dict[str, int] = body["live_recall"]["effort"]["current"]
    return current


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
