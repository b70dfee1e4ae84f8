"""What one search asks for, independent of how it arrived (HTTP body, Python call, bulk-scoring row)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index_format.plan import ParamsKey

F32 = npt.NDArray[np.float32]

FilterKey = tuple[tuple[str, tuple[str, ...]], ...]  # sorted fields, each with its sorted distinct values


@dataclass(frozen=True)
class Query:
    vector: F32  # (dim,) float32
    k: int
    exact: bool = False
    filter: FilterKey | None = None
    exclude: tuple[int | str, ...] = ()  # external ids
    params: ParamsKey = ()  # validated per-request search parameters, sorted
    offset: int = 0  # results skipped before the k returned (paging)
    score_threshold: float | None = None  # only results scoring at least this
    with_metadata: bool = False  # each result carries its metadata fields


def filter_key(filter: dict[str, list[str]] | None) -> FilterKey | None:
    """{"category": ["b", "a"]} → (("category", ("a", "b")),); None or {} filters nothing out."""
    if not filter:
        return None
    return tuple(sorted((name, tuple(sorted(set(values)))) for name, values in filter.items()))
