"""Rows of one loaded index version that are hidden (index_format/availability.py keeps the ids per index root).

Built once per load and per availability change, never per request: the mask answers "is this row hidden" for a
filter's rows, `visible` is the complement exact scans run over, and `selector` (a faiss bitmap of the visible
rows) lets the ANN index skip hidden rows during its walk, so results are not thinned out afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import numpy.typing as npt

from index_format import availability
from index_format.plan import ParamsKey, raised_effort

if TYPE_CHECKING:
    from index_format.reader import IndexReader

I64 = npt.NDArray[np.int64]
VISIBLE_CACHE_SIZE = 256  # as FilterTable.CACHE_SIZE
Bool = npt.NDArray[np.bool_]


class HiddenRows:
    """Parameters: rows — the hidden rows (any order, duplicates allowed); total — the rows of the index;
    key — what the availability file looked like when these were read (stat key; None: no file); generation and
    listed — the file's generation and how many ids it lists (some may not be in this version)."""

    def __init__(
        self,
        rows: I64,
        total: int,
        key: object = None,
        generation: int = 0,
        listed: int = 0,
        ids: frozenset[Any] = frozenset(),
        by_file: int | None = None,
    ) -> None:
        self.rows: I64 = np.unique(np.asarray(rows, dtype=np.int64))
        self.ids = ids  # the hidden external ids (a delta segment looks its own rows up)
        self.by_file = int(self.rows.size) if by_file is None else by_file  # rows hidden by the file itself
        self.total = total
        self.key = key
        self.generation = generation
        self.listed = listed
        self.count = int(self.rows.size)
        self.mask: Bool = np.zeros(total, dtype=bool)
        self.mask[self.rows] = True
        self.visible: I64 = np.flatnonzero(~self.mask).astype(np.int64)
        for array in (self.rows, self.mask, self.visible):
            array.flags.writeable = False
        # faiss reads bit i of byte i >> 3, least significant bit first; the array must outlive the selector.
        self._bitmap = np.packbits(~self.mask, bitorder="little")
        self.selector: Any = faiss.IDSelectorBitmap(total, faiss.swig_ptr(self._bitmap)) if self.count else None
        self.search_params: dict[object, tuple[Any, list[Any]]] = {}  # per effective params (reader._approximate)
        self._visible_of: dict[int, tuple[I64, I64]] = {}  # id(filter rows) -> (filter rows, their visible rows)
        self._raised: dict[tuple[ParamsKey, int], ParamsKey] = {}

    @property
    def visible_fraction(self) -> float:
        return (self.total - self.count) / self.total if self.total else 1.0

    def raised_params(self, params: ParamsKey, limits: Mapping[str, int]) -> ParamsKey:
        """ANN parameters with their effort raised by 1/(visible fraction), for searches skipping the hidden rows;
        computed once per distinct params (limits: the policy's, one object per index load as this one)."""
        key = (params, id(limits))
        raised = self._raised.get(key)
        if raised is None:
            raised = tuple(sorted(raised_effort(dict(params), self.visible_fraction, limits).items()))
            if len(self._raised) < VISIBLE_CACHE_SIZE:
                self._raised[key] = raised
        return raised

    def visible_of(self, allowed: I64) -> I64:
        """The rows of a filter (ascending) that are not hidden. Kept for the filter tables' cached (read-only) row
        arrays, so requests with the same filter get the same array and a /batch still searches them together."""
        if not self.count or allowed.size == 0:
            return allowed
        cached = self._visible_of.get(id(allowed))
        if cached is not None and cached[0] is allowed:
            return cached[1]
        visible = allowed[~self.mask[allowed]]
        if not allowed.flags.writeable:  # a cached filter's rows: the same array comes back for the same filter
            visible.flags.writeable = False
            if len(self._visible_of) >= VISIBLE_CACHE_SIZE:
                self._visible_of.pop(next(iter(self._visible_of)))
            self._visible_of[id(allowed)] = (allowed, visible)
        return visible


def read_hidden_rows(reader: IndexReader, root: Path, replaced: I64 | None = None) -> HiddenRows:
    """The rows of `reader` that ROOT/availability.json hides, plus the `replaced` ones (main rows whose ids a delta
    segment holds); raises availability.AvailabilityError."""
    key = availability.stat_key(root)
    state = availability.read(root)
    rows = reader.rows_of_ids(list(state.hidden))
    rows = rows[rows >= 0]
    by_file = int(np.unique(rows).size)
    if replaced is not None and replaced.size:
        rows = np.concatenate([rows, replaced])
    return HiddenRows(rows, reader.count, key, state.generation, len(state.hidden), state.hidden, by_file)
