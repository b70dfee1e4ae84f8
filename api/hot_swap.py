"""Hot index swap: each worker follows ``ROOT/current`` and switches to a new version only once it is loaded,
verified and warm.

Each worker checks where ``current`` points every `reload_interval` seconds (one readlink) and on POST /admin/reload.
A new target is opened in a thread (sha256 of every file before faiss reads it, manifest, metric, same dimension
unless `allow_dim_change`, faiss load, warm-up searches) while the old version keeps serving; then the holder's
single reference is replaced. Requests read the holder once and keep that `LoadedIndex` until they answer, so a
request in flight finishes on the version it started with; the old version's faiss index and numpy maps are
released when the last such request drops it (reference counting; a gc pass at the next poll catches cycles).
A refused target is logged and counted once, and not tried again until ``current`` points elsewhere (or an admin
asks for a reload).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.index_state import IndexHolder, LoadedIndex
from api.metrics import Metrics
from api.settings import Settings
from index_format import layout

LOG = logging.getLogger(__name__)

Loader = Callable[[Settings, Path], LoadedIndex]


@dataclass(frozen=True)
class ReloadResult:
    outcome: str  # swapped, unchanged, refused, or skipped (a target refused before)
    version: str | None  # the version serving after the check
    previous: str | None  # the version serving before it
    target: str | None  # the directory `current` pointed at
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reloader:
    """One per app (so per worker process); all checks run on its event loop, one at a time."""

    def __init__(self, holder: IndexHolder, settings: Settings, metrics: Metrics, loader: Loader) -> None:
        self.holder = holder
        self.settings = settings
        self.metrics = metrics
        self.loader = loader
        self.lock = asyncio.Lock()
        self.refused: str | None = None  # key of the target refused last
        self.last: ReloadResult | None = None
        self.retired: list[weakref.ref[LoadedIndex]] = []

    async def check(self, force: bool = False) -> ReloadResult:
        """Swap to what ``current`` points at if it is new and sound. force: retry a target refused before."""
        async with self.lock:
            result = await self._check(force)
        if result.outcome != "skipped":
            self.last = result
        return result

    async def _check(self, force: bool) -> ReloadResult:
        started = time.perf_counter()
        old = self.holder.current
        previous = old.version if old is not None else None
        new: LoadedIndex | None = None
        error: str | None = None
        try:
            target: Path | None = layout.resolve_current(self.settings.index_root)
            key = str(target)
        except layout.FormatError as exc:
            target, key, error = None, f"unresolved: {exc}", str(exc)
        if target is not None and old is not None and target == old.reader.version_dir:
            self.refused = None
            return ReloadResult("unchanged", previous, previous, key)
        if key == self.refused and not force:
            return ReloadResult("skipped", previous, previous, key, "refused before; waiting for current to change")
        if target is not None:
            try:
                new = await run_in_threadpool(self._load, target, old)
            except Exception as exc:  # anything wrong with a new version must leave the old one serving
                error = str(exc) or type(exc).__name__
        seconds = time.perf_counter() - started
        if new is None:
            error = error or "no index loaded"
            self.refused = key
            self.metrics.reloads.labels("refused").inc()
            LOG.error("refused index version %s (still serving %s): %s", key, previous, error)
            return ReloadResult("refused", previous, previous, key, error, round(seconds, 3))
        self.holder.current = new  # the swap: one reference assignment on the event loop
        self.refused = None
        self.metrics.reloads.labels("swapped").inc()
        self.metrics.serving(new)
        if old is not None:
            self.retired.append(weakref.ref(old))
        del old
        self.collect_retired()
        LOG.info("swapped index %s -> %s in %.2fs", previous, new.version, seconds)
        return ReloadResult("swapped", new.version, previous, key, None, round(seconds, 3))

    def _load(self, target: Path, old: LoadedIndex | None) -> LoadedIndex:
        manifest = layout.read_manifest(target)
        if old is not None and manifest.dim != old.reader.dim and not self.settings.allow_dim_change:
            raise layout.FormatError(
                f"{target}: dimension {manifest.dim}, the served index has {old.reader.dim} "
                "(set RECSYS_ALLOW_DIM_CHANGE=1 to accept it: clients must then send the new dimension)"
            )
        return self.loader(self.settings, target)

    def collect_retired(self) -> int:
        """Number of replaced versions still referenced; runs a gc pass when some are (cycles through tracebacks can
        keep an old version alive after its requests finished)."""
        self.retired = [ref for ref in self.retired if ref() is not None]
        if self.retired:
            gc.collect()
            self.retired = [ref for ref in self.retired if ref() is not None]
        self.metrics.retired.set(len(self.retired))
        return len(self.retired)

    async def poll(self, interval: float) -> None:
        """Check every `interval` seconds until cancelled; never dies of an error."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
                self.collect_retired()
            except Exception:
                LOG.exception("index reload check failed")

    def describe(self) -> dict[str, Any]:
        """The reload state reported by GET /index."""
        return {
            "interval_seconds": self.settings.reload_interval,
            "last": self.last.as_dict() if self.last is not None else None,
            "refused": self.refused,
            "retired_versions_alive": len(self.retired),
        }
