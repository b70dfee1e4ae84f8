"""Memory accounting for large builds: the process's peak RSS, and giving back the pages of a mapped file once a
sequential pass over it is done (mapped pages a process touched count in its RSS until it unmaps or drops them)."""

from __future__ import annotations

import mmap
import resource
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def peak_rss_bytes() -> int:
    """Peak resident set of this process so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _mapping_of(array: Any) -> tuple[mmap.mmap, int] | None:
    """The mmap behind a numpy view, and the view's byte offset in it, or None for ordinary arrays."""
    base = array
    while base is not None:
        mapped = getattr(base, "_mmap", None)
        if isinstance(mapped, mmap.mmap):
            start = np.asarray(array).__array_interface__["data"][0]
            origin = np.frombuffer(mapped, dtype=np.uint8, count=1).__array_interface__["data"][0]
            return mapped, start - origin
        if isinstance(base, mmap.mmap):
            return None
        base = getattr(base, "base", None)
    return None


def release_pages(array: Any, start_row: int = 0, stop_row: int | None = None) -> bool:
    """Drop this process's resident pages of rows [start_row, stop_row) of a read-only memory-mapped (N, d) array:
    the data stays in the page cache and is read back on the next access. No-op (False) for unmapped arrays."""
    found = _mapping_of(array)
    if found is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapped, offset = found
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.itemsize
    stop_row = array.shape[0] if stop_row is None else stop_row
    first = offset + start_row * row_bytes
    last = offset + stop_row * row_bytes
    page = mmap.PAGESIZE
    aligned = (first // page) * page
    length = min(len(mapped), last) - aligned
    if length > 0:
        mapped.madvise(mmap.MADV_DONTNEED, aligned, length)
    return True


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_tree(path: Path) -> int:
    """Delete a directory tree; returns the bytes it held."""
    size = dir_bytes(path)
    shutil.rmtree(path, ignore_errors=True)
    return size
