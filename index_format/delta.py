"""The delta segment of an index version: products added by `index-builder add` since the last full build.

A version with a delta holds the main index files unchanged (hard links of the previous version's) and a few small
files: the added vectors in descending-norm order (`delta_vectors.npy`), their norms, ids, metadata codes, and the
main rows they replace (`delta_replaced.npy`: an added id that the main index already holds replaces its row).
Searches scan the delta exactly (the norm-ordered scan, index_format/norm_scan.py, which stops at the
Cauchy–Schwarz bound) and merge it with the main results; replaced main rows are left out like hidden ones.

Delta rows are numbered after the main rows (row `main_count + j` is delta row j), so one row number names any
product of the version. The delta is meant to stay small (`MAX_FRACTION` of the catalogue by default): every query
scans it, and it has no ANN structure; the next full build, from an input that includes the added products,
publishes a version without a delta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index_format import layout
from index_format.norm_scan import merge_scan, norm_scan

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

VECTORS_FILE = "delta_vectors.npy"
NORMS_FILE = "delta_norms.npy"
IDS_FILE = "delta_ids.npy"
REPLACED_FILE = "delta_replaced.npy"  # main rows (ascending) whose ids the delta holds
MAX_FRACTION = 0.05  # `add` refuses a delta above this share of the main catalogue and recommends a rebuild


def metadata_codes_file(field_name: str) -> str:
    return f"delta_meta_{field_name}.npy"


def is_delta_file(name: str) -> bool:
    return name.startswith("delta_")


class DeltaSegment:
    """Parameters: base — the main index's row count (delta row j is row base + j)."""

    def __init__(self, version_dir: Path, manifest: layout.Manifest) -> None:
        self.base = manifest.count
        self.vectors: F32 = _load(version_dir / VECTORS_FILE)
        self.norms: F32 = _load(version_dir / NORMS_FILE)
        self.ids: Any = _load(version_dir / IDS_FILE)
        self.replaced: I64 = _load(version_dir / REPLACED_FILE)
        self.metadata_codes = {name: _load(version_dir / metadata_codes_file(name)) for name in manifest.metadata}
        self.count = int(self.vectors.shape[0])
        self.id_type = manifest.id_type
        self._row_of = {value: row for row, value in enumerate(self.ids.tolist())}
        if self.vectors.ndim != 2 or self.vectors.shape[1] != manifest.dim or self.norms.shape != (self.count,):
            raise layout.FormatError(f"{version_dir}: delta files do not match the manifest ({manifest.dim} dims)")
        if self.vectors.dtype != np.float32 or self.norms.dtype != np.float32 or not self.vectors.flags.c_contiguous:
            raise layout.FormatError(f"{version_dir}: delta vectors and norms must be C-contiguous float32")

    @classmethod
    def open(cls, version_dir: Path, manifest: layout.Manifest) -> DeltaSegment | None:
        """The version's delta, or None when it has none."""
        if not manifest.delta:
            return None
        try:
            return cls(version_dir, manifest)
        except (OSError, ValueError) as exc:
            raise layout.FormatError(f"{version_dir}: cannot read the delta segment: {exc}") from exc

    def local_rows_of_ids(self, external: list[Any]) -> I64:
        """Delta row of each external id, -1 where the delta does not hold it."""
        keys = [str(value).encode("utf-8") if self.id_type == "str" else value for value in external]
        return np.array([self._row_of.get(key, -1) if _hashable(key) else -1 for key in keys], dtype=np.int64)

    def external_ids(self, local_rows: I64) -> list[Any]:
        picked = self.ids[local_rows].tolist()
        if self.id_type == "str":
            return [value.decode("utf-8") for value in picked]
        return picked  # type: ignore[no-any-return]

    def top(self, q: F32, k: int, rows: I64, floor: float = -np.inf) -> tuple[F32, I64]:
        """Exact top-k of one query over the given delta rows (ascending) scoring above `floor`, best first:
        (scores, global rows). The scan starts with the floor as its k-th best score, so it stops at the first row
        whose norm times ‖q‖ cannot reach it."""
        if k <= 0 or rows.size == 0:
            return _NO_SCORES, _NO_ROWS
        k = min(k, int(rows.size))
        scores, found = np.full(k, floor, dtype=np.float32), np.full(k, -1, dtype=np.int64)
        self.merge_into(q, scores, found, rows)
        count = int(np.count_nonzero(found >= 0))  # results are a prefix, padding after
        return scores[:count], found[:count]

    def merge_into(self, q: F32, scores: F32, rows: I64, delta_rows: I64) -> None:
        """Merge the given delta rows (ascending) into one query's k results, in place (writable (k,) arrays, best
        first on return, ties: main rows first): the kernel starts from those results, so it scans only the rows
        whose norm times ‖q‖ can beat the k-th (on gowalla_als's 1% delta, ~19 of 409 rows) and no merge or sort is
        left to do in Python."""
        subset = None if delta_rows.size == self.count else delta_rows  # every row: no row list to follow
        merge_scan(self.vectors, self.norms, q, scores, rows, subset, self.base)

    def search(self, q: F32, k: int, rows: I64 | None) -> tuple[F32, I64]:
        """Exact top-k of one query over the given delta rows (ascending; None: all): (scores, global rows), best
        first, without padding."""
        if k <= 0 or self.count == 0 or (rows is not None and rows.size == 0):
            return np.empty(0, np.float32), np.empty(0, np.int64)
        if rows is not None and rows.size == self.count:  # every row: scan without gathering them
            rows = None
        scores, found = norm_scan(self.vectors, self.norms, q[None], min(k, self.count), rows=rows)
        keep = found[0] >= 0
        return scores[0][keep], found[0][keep] + self.base


_NO_SCORES = np.empty(0, np.float32)
_NO_ROWS = np.empty(0, np.int64)
for _empty in (_NO_SCORES, _NO_ROWS):
    _empty.flags.writeable = False


def _hashable(value: Any) -> bool:
    return isinstance(value, int | bytes) and not isinstance(value, bool)


def _load(path: Path) -> Any:
    return np.load(path, mmap_mode="r").view(np.ndarray)
