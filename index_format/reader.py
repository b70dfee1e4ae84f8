"""Open a published index version memory-mapped, and search it.

Both the builder (to tune and verify what it wrote) and the API (to serve) search through `IndexReader`, so the
recall stored in the manifest is measured on exactly the code path that answers requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import numpy.typing as npt

from index_format import layout
from index_format.norm_scan import norm_scan
from index_format.plan import DEFAULT_POLICY, Method, ParamsKey, SearchPlan, params_key, plan_search

if TYPE_CHECKING:
    from index_format.hidden import HiddenRows

LOG = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# The per-call search parameter each index family understands, and its name in manifests and requests.
PARAM_NAMES = ("efSearch", "nprobe", "k_factor")
PARAMS_CACHE_SIZE = 256  # distinct selector-free SearchParameters kept per reader


@dataclass(frozen=True)
class SearchResult:
    scores: F32  # (nq, k), best first; -inf where fewer than k rows qualify
    rows: I64  # (nq, k) internal row numbers; -1 where fewer than k rows qualify


def _flat_codes_view(index: Any) -> F32 | None:
    """Zero-copy (N, d) float32 view of an IndexFlat's stored vectors (mapped pages when loaded with MMAP_IFC)."""
    flat = faiss.downcast_index(index)
    if not isinstance(flat, faiss.IndexFlat) or flat.code_size != 4 * flat.d or flat.ntotal == 0:
        return None
    raw = faiss.rev_swig_ptr(flat.codes.data(), flat.ntotal * flat.code_size)
    view: F32 = raw.view(np.float32).reshape(flat.ntotal, flat.d)
    return view


class IndexReader:
    """A loaded, read-only index version. Safe to search from several threads at once (per-call params only)."""

    def __init__(self, version_dir: Path, manifest: layout.Manifest, index: Any) -> None:
        self.version_dir = version_dir
        self.manifest = manifest
        self.index = index
        self.dim = manifest.dim
        self.count = manifest.count
        self.ids = _mapped(version_dir / layout.IDS_FILE)
        self.ids_sorted = _mapped(version_dir / layout.IDS_SORTED_FILE)
        self.ids_sorted_rows = _mapped(version_dir / layout.IDS_SORTED_ROWS_FILE)
        self.norms: F32 = _mapped(version_dir / layout.NORMS_FILE)
        self.metadata_codes = {
            name: _mapped(version_dir / layout.metadata_codes_file(name)) for name in manifest.metadata
        }
        self.base = faiss.downcast_index(index)
        self.family = _family(self.base)
        self.vectors = self._raw_vectors()
        self._plain_params: dict[ParamsKey, tuple[Any, list[Any]]] = {}
        self.default_params_key: ParamsKey = params_key(manifest.default_params)
        if self.index.ntotal != self.count or self.index.d != self.dim:
            raise layout.FormatError(
                f"{version_dir}: index holds {self.index.ntotal}×{self.index.d}, manifest says {self.count}×{self.dim}"
            )

    @classmethod
    def open(cls, version_dir: Path, verify: bool = True) -> IndexReader:
        """Check the manifest (and, by default, every checksum) before faiss reads any file, then map the index."""
        version_dir = Path(version_dir)
        manifest = layout.read_manifest(version_dir)
        if verify:
            layout.verify_checksums(version_dir, manifest)
        path = version_dir / layout.INDEX_FILE
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as exc:
            raise layout.FormatError(f"{path}: faiss cannot read it: {str(exc).splitlines()[0]}") from exc
        return cls(version_dir, manifest, index)

    # ---- vectors and ids -------------------------------------------------------------------------------------

    def _raw_vectors(self) -> F32 | None:
        """The (N, d) raw vectors in row order, mapped: the index's own flat storage, or, for IVF kinds whose lists
        hold them scattered, the norm-ordered copy the builder stores beside it (`layout.RAW_VECTORS_FILE`)."""
        if isinstance(self.base, faiss.IndexFlat):
            return _flat_codes_view(self.base)
        if isinstance(self.base, faiss.IndexHNSW):
            return _flat_codes_view(self.base.storage)
        if isinstance(self.base, faiss.IndexRefine):
            return _flat_codes_view(self.base.refine_index)
        copy = self.version_dir / layout.RAW_VECTORS_FILE
        if copy.exists():
            vectors: F32 = _mapped(copy)
            if vectors.shape != (self.count, self.dim) or vectors.dtype != np.float32:
                raise layout.FormatError(
                    f"{copy}: {vectors.dtype} {vectors.shape}, expected float32 ({self.count}, {self.dim})"
                )
            return vectors
        return None

    def external_ids(self, rows: I64) -> list[Any]:
        """External ids (str or int, as given to the builder) of the given rows. Row -1 (a search's padding when
        fewer than k rows qualify) is refused: numpy would read it as the last id."""
        rows = np.asarray(rows)
        if rows.size and min(rows.ravel().tolist()) < 0:  # the list's min: numpy's costs ~1.5 µs on a few rows
            raise ValueError(f"row {int(rows.min())} is not a row of the index (padding? drop rows < 0 first)")
        picked = self.ids[rows].tolist()
        if self.manifest.id_type == "str":
            return [value.decode("utf-8") for value in picked]
        return picked  # type: ignore[no-any-return]  # int64 → Python ints

    def rows_of_ids(self, external: list[Any]) -> I64:
        """Row of each external id, -1 where the id is not in the index."""
        out = np.full(len(external), -1, dtype=np.int64)
        if not external:
            return out
        if self.manifest.id_type == "str":
            keys = np.array([str(value).encode("utf-8") for value in external], dtype=self.ids_sorted.dtype)
            fits = np.array([len(str(value).encode("utf-8")) <= self.ids_sorted.dtype.itemsize for value in external])
        else:
            usable = [value if isinstance(value, int) and not isinstance(value, bool) else None for value in external]
            fits = np.array([value is not None and -(2**63) <= value < 2**63 for value in usable])
            keys = np.array([value if ok else 0 for value, ok in zip(usable, fits, strict=True)], dtype=np.int64)
        pos = np.searchsorted(self.ids_sorted, keys)
        pos_ok = pos < self.ids_sorted.shape[0]
        found = np.zeros(len(external), dtype=bool)
        found[pos_ok] = self.ids_sorted[pos[pos_ok]] == keys[pos_ok]
        found &= fits
        out[found] = self.ids_sorted_rows[pos[found]]
        return out

    def rows_with_categories(self, field: str, names: list[str]) -> tuple[I64, list[str]]:
        """Ascending rows whose `field` is one of `names`, and the names that the index does not know."""
        known = {name: code for code, name in enumerate(self.manifest.metadata[field])}
        codes = [known[name] for name in names if name in known]
        unknown = [name for name in names if name not in known]
        mask = np.isin(self.metadata_codes[field], np.array(codes, dtype=np.int32))
        return np.flatnonzero(mask).astype(np.int64), unknown

    # ---- search ----------------------------------------------------------------------------------------------

    def default_params(self) -> dict[str, int]:
        return dict(self.manifest.default_params)

    def search(
        self,
        xq: F32,
        k: int,
        params: dict[str, int] | None = None,
        exact: bool = False,
        allowed: I64 | None = None,
    ) -> SearchResult:
        """Top-k rows by inner product for each row of xq (float32, C-contiguous, (nq, dim)), planned with the
        default policy (the builder's and the tests' entry point; the service plans with its configured policy).

        allowed: ascending rows to restrict the search to (a filter); exact: search every (allowed) row exhaustively.
        Callers validate dim and k: faiss answers a wrong dimension with a bare AssertionError.
        """
        if k <= 0 or xq.shape[0] == 0:
            return SearchResult(np.zeros((xq.shape[0], 0), np.float32), np.zeros((xq.shape[0], 0), np.int64))
        plan = plan_search(self, DEFAULT_POLICY, k, exact=exact, allowed=allowed, params=params_key(params))
        return self.execute(plan, xq, k)

    def execute(self, plan: SearchPlan, xq: F32, k: int | None = None) -> SearchResult:
        """Carry out a plan for every row of xq: (nq, k) results, k = plan.fetch unless given (≥ plan.fetch pads with
        row -1 and score -inf). Decides nothing: the method, rows and parameters are the plan's."""
        k = plan.fetch if k is None else k
        method = plan.method
        if method is Method.NOTHING or k <= 0:
            nq = xq.shape[0]
            return SearchResult(np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64))
        if method is Method.ANN:
            if plan.hidden is not None:
                return _faiss_search(self.base, xq, k, self._skipping_params(plan.params, plan.hidden))
            return self._approximate(xq, k, plan.params, plan.allowed)
        if method is Method.NORM_SCAN:
            assert self.vectors is not None
            scores, rows = norm_scan(self.vectors, self.norms, xq, k, rows=plan.allowed)
            return SearchResult(scores, rows)
        if method is Method.FLAT:
            return _faiss_search(self._flat_storage(), xq, k, None)
        # FULL_PROBE: an IVF built before the builder stored a row-ordered raw copy; probing every list is exhaustive.
        nlist = int(faiss.extract_index_ivf(self.base).nlist)
        return self._approximate(xq, k, (("nprobe", nlist),), plan.allowed)

    @property
    def has_flat_storage(self) -> bool:
        """Whether a faiss IndexFlat holds the raw vectors (flat, hnsw, refine; not IVF lists)."""
        return self.family in ("flat", "hnsw", "refine")

    def _flat_storage(self) -> Any:
        """The faiss IndexFlat holding the raw vectors, or None (IVF lists)."""
        if self.family == "flat":
            return self.base
        if self.family in ("hnsw", "refine"):
            return _storage_index(self.base)
        return None

    def _approximate(self, xq: F32, k: int, params: ParamsKey, allowed: I64 | None) -> SearchResult:
        if allowed is None:
            return _faiss_search(self.base, xq, k, self._unfiltered_params(params)[0])
        keep_alive = allowed.astype(np.int64)
        selector = faiss.IDSelectorBatch(keep_alive.size, faiss.swig_ptr(keep_alive))
        search_params, _objects = build_search_params(self.family, dict(params), selector)
        result = _faiss_search(self.base, xq, k, search_params)
        del keep_alive, _objects
        return result

    def _unfiltered_params(self, params: ParamsKey) -> tuple[Any, list[Any]]:
        """Selector-free SearchParameters, made once per distinct params (building one through SWIG costs ~3 µs
        of a ~40 µs IVF probe); faiss only reads them, so threads can share them. At most PARAMS_CACHE_SIZE are
        kept: clients choose per-request params, and every combination must not stay in memory."""
        cached = self._plain_params.get(params)
        if cached is None:
            cached = build_search_params(self.family, dict(params))
            if len(self._plain_params) < PARAMS_CACHE_SIZE:
                self._plain_params[params] = cached
        return cached

    def _skipping_params(self, params: ParamsKey, hidden: HiddenRows) -> Any:
        """SearchParameters skipping the hidden rows (their bitmap selector), made once per distinct params and
        kept with the hidden rows they belong to (at most PARAMS_CACHE_SIZE)."""
        cached = hidden.search_params.get(params)
        if cached is None:
            cached = build_search_params(self.family, dict(params), hidden.selector)
            if len(hidden.search_params) < PARAMS_CACHE_SIZE:
                hidden.search_params[params] = cached
        return cached[0]

    def warm(self) -> float:
        """Touch every mapped page (the mapping uses MADV_RANDOM: a cold flat scan can take seconds) and run a few
        searches. Returns the seconds spent."""
        started = time.perf_counter()
        path = self.version_dir / layout.INDEX_FILE
        buffer = bytearray(1 << 20)  # one small reused buffer: 16 MiB reads stayed in every worker's heap
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
        if self.vectors is not None:
            float(np.asarray(self.vectors[:: max(1, 4096 // (4 * self.dim))]).sum())
        source = self.vectors[:8] if self.vectors is not None else np.ones((8, self.dim))
        probe: F32 = np.ascontiguousarray(source, dtype=np.float32)
        self.search(probe, min(10, self.count))
        self.search(probe, min(10, self.count), exact=True)
        return time.perf_counter() - started


def _storage_index(base: Any) -> Any:
    if isinstance(base, faiss.IndexHNSW):
        return faiss.downcast_index(base.storage)
    return faiss.downcast_index(base.refine_index)


def _family(base: Any) -> str:
    if isinstance(base, faiss.IndexFlat):
        return "flat"
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(base, faiss.IndexRefine):
        return "refine"
    if isinstance(base, faiss.IndexIVF):
        return "ivf"
    raise layout.FormatError(f"unsupported faiss index type {type(base).__name__}")


def build_search_params(family: str, params: dict[str, int], selector: Any = None) -> tuple[Any, list[Any]]:
    """faiss per-call SearchParameters for an index family; the list holds objects that must outlive the search.

    efSearch is always passed explicitly: SearchParametersHNSW(sel=...) alone silently uses efSearch 16.
    """
    if family == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=int(params["efSearch"]), sel=selector), []
    if family == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(params["nprobe"]), sel=selector), []
    if family == "refine":
        base = faiss.SearchParametersIVF(nprobe=int(params["nprobe"]), sel=selector)
        refine = faiss.IndexRefineSearchParameters(k_factor=float(params["k_factor"]), base_index_params=base)
        return refine, [base]
    if family == "flat":
        return (faiss.SearchParameters(sel=selector) if selector is not None else None), []
    raise ValueError(f"unknown index family {family!r}")


def _faiss_search(index: Any, xq: F32, k: int, params: Any) -> SearchResult:
    """index.search through its SWIG entry point (the Python wrapper costs ~5 µs per call); padding rows (-1) get
    -inf scores."""
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    n, d = xq.shape
    if d != index.d or k <= 0:  # faiss would read past the array: never call it so
        raise ValueError(f"queries of dimension {d} and k={k} for an index of dimension {index.d}")
    scores = np.empty((n, k), dtype=np.float32)
    rows = np.empty((n, k), dtype=np.int64)
    index.search_c(n, faiss.swig_ptr(xq), k, faiss.swig_ptr(scores), faiss.swig_ptr(rows), params)
    # faiss fills each result row best first and pads only its tail: the last column tells whether any row is short.
    if n == 1 and rows[0, -1] >= 0:
        return SearchResult(scores, rows)
    if n and (rows[:, -1] < 0).any():
        scores[rows < 0] = -np.inf
    return SearchResult(scores, rows)


def _mapped(path: Path) -> Any:
    """A read-only mapped .npy as a plain ndarray: np.memmap's subclass hooks cost µs on every slice."""
    return np.load(path, mmap_mode="r").view(np.ndarray)
