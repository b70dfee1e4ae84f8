"""The norm-ordered raw copy, written as a faiss IndexFlatIP file chunk by chunk.

faiss builds a Flat index in memory before writing it (a full extra copy of the vectors). The file layout of an
IndexFlatIP is a fixed header followed by the raw float32 rows, so the builder writes that header (taken from faiss's
own serialisation of an empty index, with the row count patched in) and then the rows in norm order, one chunk at a
time, gathered from the (memory-mapped) input. The result is byte-identical to `faiss.write_index` of the same rows
(tests/test_scale_build.py) and is the file that `flat`/`pruned` publish and every other kind is built from.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_builder.memory import release_pages

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

NTOTAL_AT = 8  # int64 ntotal after the fourcc and the int32 dimension
CODES_SIZE_FROM_END = 8  # the header ends with the int64 number of float32 codes
GATHER_ROWS = 65536


def flat_header(n: int, d: int) -> bytes:
    """Header of an IndexFlatIP file holding n rows of dimension d (the codes follow it)."""
    empty = bytearray(faiss.serialize_index(faiss.IndexFlatIP(d)).tobytes())
    if struct.unpack_from("<q", empty, NTOTAL_AT)[0] != 0 or empty[:4] != b"IxFI":
        raise RuntimeError("unexpected IndexFlatIP serialisation: this faiss version is not supported")
    struct.pack_into("<q", empty, NTOTAL_AT, n)
    struct.pack_into("<q", empty, len(empty) - CODES_SIZE_FROM_END, n * d)
    return bytes(empty)


def write_sorted_flat(path: Path, source: F32, order: I64, progress: Callable[[int, int], None] | None = None) -> None:
    """Write rows source[order] as an IndexFlatIP file; source may be memory-mapped (its pages are dropped after
    each chunk, so the build's RSS does not grow by the input's size)."""
    n, d = source.shape[0], source.shape[1]
    with open(path, "wb") as handle:
        handle.write(flat_header(order.shape[0], d))
        for start in range(0, order.shape[0], GATHER_ROWS):
            rows = order[start : start + GATHER_ROWS]
            ascending = np.argsort(rows, kind="stable")  # read the input in file order, write in norm order
            block = np.empty((rows.shape[0], d), dtype=np.float32)
            block[ascending] = source[rows[ascending]]
            handle.write(block.tobytes())
            release_pages(source, 0, n)
            if progress is not None:
                progress(min(start + GATHER_ROWS, order.shape[0]), order.shape[0])


def map_flat_vectors(path: Path) -> F32:
    """(n, d) read-only view of the rows of an IndexFlatIP file, mapped with Python's mmap so its pages can be
    released (`memory.release_pages`)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        d = struct.unpack_from("<i", head, 4)[0]
        n = struct.unpack_from("<q", head, NTOTAL_AT)[0]
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    offset = len(flat_header(0, d))
    view: Any = np.frombuffer(mapped, dtype=np.float32, count=n * d, offset=offset).reshape(n, d)
    rows: F32 = _MappedRows(view, mapped)
    return rows


class _MappedRows(np.ndarray):
    """An ndarray that remembers its mmap (as np.memmap does) so its pages can be released."""

    _mmap: mmap.mmap | None

    def __new__(cls, view: Any, mapped: mmap.mmap) -> Any:
        obj = view.view(cls)
        obj._mmap = mapped
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self._mmap = getattr(obj, "_mmap", None)
