"""The served index: loading ``ROOT/current`` (checksums, mmap, warm-up) and the holder requests read it from."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.categories import category_counts
from api.effort import apply_saved, state_dir
from api.errors import ApiError
from api.schemas import RequestRules
from api.settings import Settings
from index_format import layout
from index_format.engine import SearchIndex
from index_format.filters import FilterTable
from index_format.plan import INLINE_WORK, SearchPolicy
from index_format.reader import IndexReader
from index_format.searcher import param_limits as family_param_limits

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedIndex:
    """Everything a request needs from one index version; a request reads the holder once and uses only this."""

    engine: SearchIndex  # the reader, its filter table and the search policy (built once per load)
    rules: RequestRules
    warm_seconds: float
    version: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", self.reader.manifest.version)

    @property
    def reader(self) -> IndexReader:
        return self.engine.reader

    @property
    def filters(self) -> FilterTable:
        return self.engine.filters

    @property
    def policy(self) -> SearchPolicy:
        return self.engine.policy

    def hidden_summary(self) -> dict[str, int]:
        """Hidden items (api/hidden_items.py): rows hidden in this version, ids the availability file lists (some
        may not be in this version) and the file's generation."""
        hidden = self.engine.hidden
        if hidden is None:
            return {"items": 0, "ids_listed": 0, "generation": 0}
        return {"items": hidden.by_file, "ids_listed": hidden.listed, "generation": hidden.generation}

    def delta_summary(self) -> dict[str, Any]:
        """Products added by `index-builder add` since the full build (index_format/delta.py)."""
        delta = self.engine.delta
        if delta is None:
            return {"items": 0, "replaced": 0}
        return {"items": delta.count, "replaced": int(delta.replaced.size), **self.reader.manifest.delta}

    def describe(self, settings: Settings) -> dict[str, Any]:
        """The body of GET /index."""
        manifest = self.reader.manifest
        return {
            "version": manifest.version,
            "kind": manifest.kind,
            "factory": manifest.factory,
            "family": self.reader.family,
            "count": manifest.count,
            "dim": manifest.dim,
            "metric": manifest.metric,
            "id_type": manifest.id_type,
            "built_at": manifest.built_at,
            "build_seconds": manifest.build_seconds,
            "faiss_version": manifest.faiss_version,
            "default_params": manifest.default_params,
            "exact_method": manifest.exact_method,
            "k": manifest.k,
            "recall_at_k": manifest.recall_at_k,
            "target_recall": manifest.target_recall,
            "recall_queries": manifest.tuning.get("queries_source"),
            "filter_fields": {name: list(values) for name, values in manifest.metadata.items()},
            "categories": category_counts(self.reader),
            "search_params": {name: {"min": 1, "max": limit} for name, limit in self.rules.param_limits.items()},
            "limits": {
                "max_k": settings.max_k,
                "max_batch": settings.max_batch,
                "max_body_bytes": settings.max_body_bytes,
                "max_exclude": settings.max_exclude,
                "max_window": settings.max_window,
            },
            "warm_seconds": round(self.warm_seconds, 3),
            "hidden": self.hidden_summary(),
            "delta": self.delta_summary(),
        }


class IndexHolder:
    """One reference to the served index, replaced as a whole by api/hot_swap.py; None until loaded."""

    def __init__(self) -> None:
        self.current: LoadedIndex | None = None

    def serving(self) -> LoadedIndex:
        """The current index, read once per request (one request never mixes two versions); 503 until loaded."""
        loaded = self.current
        if loaded is None:
            raise ApiError(503, "the index is not loaded yet")
        return loaded


def load_index(settings: Settings, version_dir: Path | None = None) -> LoadedIndex:
    """Resolve ROOT/current (unless a version directory is given), check every checksum before faiss reads a file,
    map the index and warm it.

    Raises layout.FormatError for a missing, corrupt or incompatible index.
    """
    started = time.perf_counter()
    if version_dir is None:
        version_dir = layout.resolve_current(settings.index_root)
    reader = open_reader(version_dir, settings.verify_checksums)
    if reader.manifest.metric != layout.METRIC:
        raise layout.FormatError(
            f"{version_dir}: metric {reader.manifest.metric!r}, this service serves {layout.METRIC}"
        )
    opened = time.perf_counter() - started
    warm_seconds = reader.warm() if settings.warm else 0.0
    rules = RequestRules(
        dim=reader.dim,
        id_type=reader.manifest.id_type,
        metadata={name: frozenset(values) for name, values in reader.manifest.metadata.items()},
        param_limits=param_limits(reader, settings),
        family=reader.family,
        max_k=settings.max_k,
        max_exclude=settings.max_exclude,
        max_window=settings.max_window,
    )
    engine = SearchIndex.with_changes(reader, search_policy(settings, rules.param_limits), settings.index_root)
    directory = state_dir(settings.recall_state_dir, settings.index_root)
    apply_saved(engine, directory, settings.recall_max_effort_factor, rules.param_limits)  # raised by live recall
    LOG.info(
        "serving index %s (%s, %d×%d, %s) from %s: opened in %.2fs%s, warmed in %.2fs",
        reader.manifest.version,
        reader.manifest.kind,
        reader.count,
        reader.dim,
        reader.manifest.default_params or "exact",
        version_dir,
        opened,
        " with checksums verified" if settings.verify_checksums else " WITHOUT checksum verification",
        warm_seconds,
    )
    return LoadedIndex(engine, rules, warm_seconds)


def search_policy(settings: Settings, param_limits: Mapping[str, int]) -> SearchPolicy:
    return SearchPolicy(
        filter_exact_fraction=settings.filter_exact_fraction,
        filter_exact_budget=settings.filter_exact_budget,
        group_exact_budget=settings.group_exact_budget,
        inline_work=INLINE_WORK,
        param_limits=param_limits,
    )


def open_reader(version_dir: Path, verify: bool) -> IndexReader:
    """IndexReader.open, with any unreadable file reported as a FormatError naming the directory."""
    try:
        return IndexReader.open(version_dir, verify=verify)
    except layout.FormatError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise layout.FormatError(f"{version_dir}: cannot load the index: {exc}") from exc


def param_limits(reader: IndexReader, settings: Settings) -> dict[str, int]:
    """The per-request search parameters this index family accepts, each with its largest allowed value (the
    configured maxima; the same rule as the Python API's `index_format.searcher.param_limits`)."""
    return family_param_limits(reader, settings.max_ef_search, settings.max_nprobe, settings.max_k_factor)


def check_index(root: Path, verify: bool) -> str:
    """Open ROOT/current once (as the workers will) and return a one-line summary; raises layout.FormatError."""
    reader = open_reader(layout.resolve_current(root), verify)
    manifest = reader.manifest
    summary = f"{manifest.version} ({manifest.kind}, {manifest.count}×{manifest.dim})"
    del reader
    return summary
