"""The exact stored vectors of an index version, and exact inner products with every row, for every index family.

Flat, HNSW and IVF-PQ-with-refine indexes keep the raw vectors in row order (`IndexReader.vectors`, mapped). An
IVF,Flat index keeps them too, but scattered over its inverted lists: faiss's own `reconstruct` needs a direct map
(`make_direct_map`), which would modify the shared, memory-mapped index object. Instead, the (list, offset) of every
row is read from the lists once, on first use (one pass over the ids, ~n·12 bytes), and the codes — raw float32 in
an IVF,Flat — are read in place. Other IVF encodings (SQ, PQ without refine) store no exact vector: `Unavailable`.
"""

from __future__ import annotations

import threading
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_format.inner_products import inner_products, inner_products_of_rows
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class Unavailable(Exception):
    """The index does not store exact vectors, so the request cannot be answered exactly."""


class StoredVectors:
    """Exact stored vectors of one `IndexReader`; safe to share between threads."""

    def __init__(self, reader: IndexReader) -> None:
        self.reader = reader
        self._lock = threading.Lock()
        self._where: tuple[I64, I64] | None = None  # IVF,Flat: (list, offset) of each row, built on first use
        self._ivf: Any = None
        if reader.vectors is None:
            ivf = faiss.extract_index_ivf(reader.base)
            if isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat) and ivf.code_size == 4 * reader.dim:
                self._ivf = ivf

    @property
    def available(self) -> bool:
        return self.reader.vectors is not None or self._ivf is not None

    def why_unavailable(self) -> str:
        return (
            f"this index ({self.reader.manifest.factory}) does not store exact product vectors; rebuild it with a kind "
            "that does (flat, pruned, hnsw, ivf, ivfpq)"
        )

    def of_rows(self, rows: I64) -> F32:
        """(len(rows), d) float32 copy of the stored vectors of `rows`."""
        if self.reader.vectors is not None:
            out: F32 = np.array(self.reader.vectors[rows], dtype=np.float32)
            return out
        if self._ivf is None:
            raise Unavailable(self.why_unavailable())
        lists, offsets = self._locations()
        invlists = self._ivf.invlists
        d = self.reader.dim
        out = np.empty((rows.size, d), dtype=np.float32)
        for i, row in enumerate(rows.tolist()):
            list_no, offset = int(lists[row]), int(offsets[row])
            pointer = invlists.get_single_code(list_no, offset)
            out[i] = faiss.rev_swig_ptr(pointer, 4 * d).view(np.float32)
            invlists.release_codes(list_no, pointer)
        return out

    def scores(self, q: F32, rows: I64 | None = None) -> F32:
        """Exact inner product of q (d,) with every row (or with the ascending `rows`), in that row order."""
        n = self.reader.count if rows is None else rows.size
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        vectors = self.reader.vectors
        if vectors is not None:
            return inner_products(vectors, q) if rows is None else inner_products_of_rows(vectors, q, rows)
        # IVF: probing every list is exhaustive; k = every (allowed) row returns each score once.
        found = self.reader.search(np.ascontiguousarray(q[None, :], dtype=np.float32), n, exact=True, allowed=rows)
        got = found.rows[0] >= 0
        positions = found.rows[0][got] if rows is None else np.searchsorted(rows, found.rows[0][got])
        out.fill(-np.inf)
        out[positions] = found.scores[0][got]
        return out

    def _locations(self) -> tuple[I64, I64]:
        with self._lock:
            if self._where is None:
                invlists = self._ivf.invlists
                lists = np.full(self.reader.count, -1, dtype=np.int64)
                offsets = np.full(self.reader.count, -1, dtype=np.int64)
                for list_no in range(invlists.nlist):
                    size = invlists.list_size(list_no)
                    if size == 0:
                        continue
                    pointer = invlists.get_ids(list_no)
                    ids = np.array(faiss.rev_swig_ptr(pointer, size), dtype=np.int64)
                    invlists.release_ids(list_no, pointer)
                    lists[ids] = list_no
                    offsets[ids] = np.arange(size, dtype=np.int64)
                if (lists < 0).any():
                    raise Unavailable(f"{int((lists < 0).sum())} rows are missing from the IVF lists")
                self._where = (lists, offsets)
            return self._where
