"""Shapes of the answers (see api/README_API.md); fields the server may add later are simply not listed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias, TypedDict


class Recommendation(TypedDict):
    id: str | int
    score: float


class Group(TypedDict):
    category: str
    recommendations: list[Recommendation]


class Recommendations(TypedDict, total=False):
    """/infer and /similar answers: `recommendations`, or `groups` with group_by."""

    name: str
    id: str | int
    metric: str
    group_by: str
    recommendations: list[Recommendation]
    groups: list[Group]


class IndexInfo(TypedDict, total=False):
    version: str
    kind: str
    count: int
    dim: int
    id_type: str
    categories: dict[str, dict[str, int]]
    limits: dict[str, int]
    search_params: dict[str, Any]


UserQuery: TypeAlias = tuple[str, Iterable[float]]
