"""The public Python API: top-k search of a published index outside HTTP.

`Searcher` is a thin layer over `SearchIndex` (index_format/engine.py): it validates what a caller passes, turns it
into `Query` objects and lets the engine plan and execute them, so a Python call, an HTTP request and a bulk-scoring
row asking the same thing are searched by the same plan and get the same answer. Results never hold padding: fewer
than k hits only when fewer rows qualify (a filter, exclusions, a small index).

    from index_format import Searcher
    searcher = Searcher.open("indexes/demo")          # ROOT/current, checksums checked, index mapped
    found = searcher.search(vectors, k=10, filter={"category": ["desserts"]}, exclude=["p00017"])
    found[0].ids, found[0].scores                      # external ids (str or int), float32 scores, best first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index_format import layout
from index_format.engine import Hits, SearchIndex
from index_format.plan import SearchPlan, SearchPolicy
from index_format.query import FilterKey, Query, filter_key
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
ItemId = int | str

# Largest per-call search parameters accepted by default (the service's defaults, api/settings.py).
MAX_EF_SEARCH = 2048
MAX_NPROBE = 1024
MAX_K_FACTOR = 64


class SearchError(ValueError):
    """A search argument is invalid (dimension, k, filter, exclusions, parameters); the message says which."""


@dataclass(frozen=True)
class Result:
    """One query's answer: external ids and their inner-product scores, best first, at most k, no padding."""

    ids: list[ItemId]
    scores: F32


def param_limits(
    reader: IndexReader,
    max_ef_search: int = MAX_EF_SEARCH,
    max_nprobe: int = MAX_NPROBE,
    max_k_factor: int = MAX_K_FACTOR,
) -> dict[str, int]:
    """The per-call search parameters this index family accepts, each with its largest allowed value."""
    if reader.family == "hnsw":
        return {"efSearch": max_ef_search}
    if reader.family in ("ivf", "refine"):
        limits = {"nprobe": min(max_nprobe, int(faiss.extract_index_ivf(reader.base).nlist))}
        if reader.family == "refine":
            limits["k_factor"] = max_k_factor
        return limits
    return {}


class Searcher:
    """Search one loaded index version. Safe to share between threads (the engine only reads the mapped index).

    Parameters:
        engine: the reader, its filter table and the policy plans are made with (built once per index load).
    """

    def __init__(self, engine: SearchIndex) -> None:
        self.engine = engine
        self.reader = engine.reader
        self.dim = engine.reader.dim
        self.version = engine.reader.manifest.version
        self._metadata = {name: frozenset(values) for name, values in self.reader.manifest.metadata.items()}

    @classmethod
    def open(
        cls, root: str | Path, *, policy: SearchPolicy | None = None, verify: bool = True, warm: bool = True
    ) -> Searcher:
        """Open ``ROOT/current`` (resolved once), or ROOT itself when it is a version directory: check every
        checksum before faiss reads a file (unless verify=False), map the index, and warm it. Products added since
        the full build (`index-builder add`) are searched and products hidden at the root (`index-builder hide`,
        the parent of a version directory) are left out, as by the service, as of this call.

        policy: the thresholds plans are made with; by default `SearchPolicy()` with `param_limits` of this index.
        Raises layout.FormatError for a missing, corrupt or incompatible index.
        """
        root = Path(root)
        version_dir = root if (root / layout.MANIFEST).is_file() else layout.resolve_current(root)
        try:
            reader = IndexReader.open(version_dir, verify=verify)
        except layout.FormatError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise layout.FormatError(f"{version_dir}: cannot load the index: {exc}") from exc
        if reader.manifest.metric != layout.METRIC:
            raise layout.FormatError(f"{version_dir}: metric {reader.manifest.metric!r}, expected {layout.METRIC}")
        if warm:
            reader.warm()
        if policy is None:
            policy = SearchPolicy(param_limits=param_limits(reader))
        return cls(SearchIndex.with_changes(reader, policy, version_dir.parent))

    # ---- validation: arguments → queries ---------------------------------------------------------------------

    def vectors(self, vectors: Any) -> F32:
        """(n, dim) float32 C-contiguous copy of the query vectors; SearchError naming the first bad row."""
        try:
            xq = np.array(vectors, dtype=np.float32, order="C", ndmin=2)
        except (TypeError, ValueError) as exc:
            raise SearchError(f"vectors: expected an (n, {self.dim}) array of numbers: {exc}") from exc
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise SearchError(
                f"vectors: wrong dimension: expected (n, {self.dim}) (the index dimension), got {xq.shape}"
            )
        finite = np.isfinite(xq).all(axis=1)
        if not finite.all():
            raise SearchError(f"vectors: row {int(np.flatnonzero(~finite)[0])} holds a non-finite number (NaN or inf)")
        return xq

    def filter_key(self, filter: Mapping[str, Sequence[str]] | None) -> FilterKey | None:
        """A validated filter: {field: [values]} keeps rows whose field is any of the values (fields combine by AND)."""
        if not filter:
            return None
        for name, values in filter.items():
            known = self._metadata.get(name)
            if known is None:
                raise SearchError(
                    f"filter: unknown field {name!r}; this index has: {', '.join(sorted(self._metadata)) or 'none'}"
                )
            if isinstance(values, str) or not isinstance(values, Sequence):
                raise SearchError(f"filter: {name!r}: expected a list of values, got {type(values).__name__}")
            unknown = [value for value in values if value not in known]
            if unknown:
                raise SearchError(f"filter: unknown value {unknown[0]!r} for {name!r}")
        return filter_key({name: list(values) for name, values in filter.items()})

    def exclude_ids(self, exclude: Sequence[ItemId] | None) -> tuple[ItemId, ...]:
        """Validated ids to leave out (ids not in the index are ignored: nothing to exclude)."""
        if exclude is None:
            return ()
        wanted: type = str if self.reader.manifest.id_type == "str" else int
        out = tuple(exclude.tolist() if isinstance(exclude, np.ndarray) else exclude)
        for value in out:
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise SearchError(
                    f"exclude: expected {wanted.__name__} ids (this index has {wanted.__name__} ids), got {value!r}"
                )
        return out

    def params_key(self, params: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
        if not params:
            return ()
        limits = self.engine.policy.param_limits
        for name, value in params.items():
            if name not in limits:
                accepted = ", ".join(sorted(limits)) or "none"
                family = self.reader.family
                raise SearchError(
                    f"params: {name!r} is not a search parameter of this index ({family}); it accepts: {accepted}"
                )
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= limits[name]:
                raise SearchError(f"params: {name!r} must be an integer in 1..{limits[name]}, got {value!r}")
        return tuple(sorted((name, int(value)) for name, value in params.items()))

    def k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise SearchError(f"k: expected a positive integer, got {k!r}")
        return int(k)

    def _per_query_excludes(
        self, exclude: Sequence[ItemId] | Sequence[Sequence[ItemId]] | None, n: int
    ) -> list[tuple[ItemId, ...]]:
        """One list of ids excludes them for every query; a list of n lists (one per query) excludes per query."""
        if exclude is None or len(exclude) == 0:
            return [()] * n
        if all(isinstance(ids, list | tuple | np.ndarray) for ids in exclude):
            if len(exclude) != n:
                raise SearchError(f"exclude: {len(exclude)} lists of ids for {n} queries (one list per query)")
            return [self.exclude_ids(ids) for ids in exclude]  # type: ignore[arg-type]
        shared = self.exclude_ids(exclude)  # type: ignore[arg-type]
        return [shared] * n

    # ---- search ----------------------------------------------------------------------------------------------

    def hits(
        self,
        vectors: Any,
        k: int,
        exact: bool = False,
        filter: Mapping[str, Sequence[str]] | None = None,
        exclude: Sequence[ItemId] | Sequence[Sequence[ItemId]] | None = None,
        params: Mapping[str, int] | None = None,
    ) -> list[Hits]:
        """Rows and scores (see `search` for the arguments): the queries without exclusions share one plan, each
        query with exclusions gets its own, and the engine runs the plans that agree in one vectorised search."""
        xq = self.vectors(vectors)
        base = Query(
            np.zeros(self.dim, np.float32), self.k(k), bool(exact), self.filter_key(filter), (), self.params_key(params)
        )
        shared: SearchPlan | None = None
        plans: list[SearchPlan] = []
        for ids in self._per_query_excludes(exclude, xq.shape[0]):
            if ids:
                plans.append(self.engine.plan(replace(base, exclude=ids)))
                continue
            if shared is None:
                shared = self.engine.plan(base)
            plans.append(shared)
        return self.engine.search_matrix(xq, plans) if plans else []

    def search(
        self,
        vectors: Any,
        k: int,
        exact: bool = False,
        filter: Mapping[str, Sequence[str]] | None = None,
        exclude: Sequence[ItemId] | Sequence[Sequence[ItemId]] | None = None,
        params: Mapping[str, int] | None = None,
    ) -> list[Result]:
        """Top-k items by inner product for each row of `vectors` ((n, dim) numbers), best first.

        exact: search every allowed row exhaustively (otherwise the index's approximate search, tuned by the builder);
        filter: {field: [values]}; exclude: external ids to leave out, for every query, or one list per query;
        params: per-call search parameters (efSearch, nprobe, k_factor: see `param_limits`).
        Raises SearchError for invalid arguments.
        """
        found = self.hits(vectors, k, exact, filter, exclude, params)
        return [Result(self.engine.external_ids(hits.rows), hits.scores) for hits in found]
