"""Rows allowed by a metadata filter, without scanning every row per request.

For each categorical field the rows are grouped by category once at start-up (a stable argsort of the codes), so
the rows of one category are a slice and a filter costs O(rows it allows), not O(catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from index_format.query import FilterKey

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


class CategoryRows:
    """Ascending rows of each category of one field."""

    def __init__(self, codes: I32, names: list[str]) -> None:
        codes = np.asarray(codes)
        self.code_of = {name: code for code, name in enumerate(names)}
        self.order: I64 = np.argsort(codes, kind="stable").astype(np.int64)  # ascending rows within a code
        # bounds[c] .. bounds[c + 1] is the slice of `order` holding code c (missing values, -1, come first).
        self.bounds = np.searchsorted(codes[self.order], np.arange(len(names) + 1), side="left")

    def rows(self, names: tuple[str, ...]) -> I64:
        parts = [self.order[self.bounds[code] : self.bounds[code + 1]] for code in (self.code_of[n] for n in names)]
        if not parts:
            return np.empty(0, dtype=np.int64)
        if len(parts) == 1:
            return parts[0]
        return np.sort(np.concatenate(parts))


class FilterTable:
    """Rows allowed by each filter. A request asks for them more than once (to choose the inline or thread-pool
    path, then to search) and clients repeat the same filters, so the last CACHE_SIZE distinct filters keep their
    rows, read-only."""

    CACHE_SIZE = 256

    def __init__(self, metadata_codes: Mapping[str, I32], metadata: Mapping[str, list[str]]) -> None:
        self.fields = {name: CategoryRows(metadata_codes[name], names) for name, names in metadata.items()}
        self._cache: dict[FilterKey, I64] = {}

    def allowed_rows(self, key: FilterKey) -> I64:
        """Ascending rows matching every field of the filter (any of the values listed for a field); read-only."""
        rows = self._cache.get(key)
        if rows is None:
            rows = self._rows(key)
            rows.flags.writeable = False
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))  # the oldest entry
            self._cache[key] = rows
        return rows

    def _rows(self, key: FilterKey) -> I64:
        result: I64 | None = None
        for field_name, names in key:
            rows = self.fields[field_name].rows(names)
            result = rows if result is None else np.intersect1d(result, rows, assume_unique=True)
        return result if result is not None else np.empty(0, dtype=np.int64)
