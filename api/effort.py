"""Raised search effort per index version: one small JSON file per version, shared by every worker of the server
and kept across restarts.

The live recall check (api/live_recall.py) raises the effort parameter (efSearch for HNSW, nprobe for IVF and
IVF+refine) one rung of the builder's ladder at a time. The file holds the parameters in force; each worker re-reads
it when it changes (a stat per check interval) and puts them into its `SearchIndex` (plans start from them; a
request's own `params` still win). The effort never goes below the manifest's tuned value nor above the ceiling
(tuned × RECSYS_RECALL_MAX_EFFORT_FACTOR, and the per-request limit of the parameter).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index_builder.kinds import EF_SEARCH_GRID, NPROBE_LADDER
from index_format.engine import SearchIndex
from index_format.plan import EFFORT_PARAMS, ParamsKey, params_key

LOG = logging.getLogger(__name__)

LADDERS: dict[str, tuple[int, ...]] = {"efSearch": EF_SEARCH_GRID, "nprobe": NPROBE_LADDER}
BEYOND_LADDER = 1.5  # step beyond the ladder's last rung (the ladder's own steps are at most 1.5×)
STATE_DIR_NAME = ".live-state"  # under the index root when RECSYS_RECALL_STATE_DIR is not set


def effort_param(params: Mapping[str, int]) -> str | None:
    """The parameter that buys recall for this index (efSearch or nprobe); None for exact indexes."""
    return next((name for name in EFFORT_PARAMS if name in params), None)


def next_rung(name: str, value: int, ceiling: int) -> int | None:
    """The builder's next ladder value above `value`, at most `ceiling`; None when `value` is at the ceiling."""
    if value >= ceiling:
        return None
    above = [rung for rung in LADDERS.get(name, ()) if rung > value]
    step = above[0] if above else math.ceil(value * BEYOND_LADDER)
    return min(max(step, value + 1), ceiling)


@dataclass(frozen=True)
class EffortBounds:
    """Where the effort of one version may go: from the manifest's tuned parameters up to the ceiling."""

    tuned: dict[str, int]
    name: str | None  # the effort parameter; None: nothing to raise (an exact index)
    ceiling: int

    @classmethod
    def of(cls, tuned: Mapping[str, int], factor: float, limits: Mapping[str, int]) -> EffortBounds:
        name = effort_param(tuned)
        if name is None:
            return cls(dict(tuned), None, 0)
        ceiling = max(tuned[name], min(math.floor(tuned[name] * factor), limits.get(name, tuned[name])))
        return cls(dict(tuned), name, ceiling)

    def clamp(self, params: Mapping[str, int]) -> dict[str, int]:
        """Parameters from a state file, never below the tuned value nor above the ceiling."""
        out = dict(self.tuned)
        if self.name is not None and self.name in params:
            out[self.name] = min(max(int(params[self.name]), self.tuned[self.name]), self.ceiling)
        return out


class EffortStore:
    """The state files of one server: DIR/<version>.json, written under an flock and replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, version: str) -> Path:
        return self.directory / f"{version}.json"

    def read(self, version: str) -> dict[str, Any] | None:
        try:
            state = json.loads(self.path(version).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOG.warning("ignoring unreadable effort state %s: %s", self.path(version), exc)
            return None
        return state if isinstance(state, dict) and isinstance(state.get("params"), dict) else None

    def stamp(self, version: str) -> float | None:
        """The file's modification time (None: no file): workers re-read it only when this changes."""
        try:
            return self.path(version).stat().st_mtime_ns / 1e9
        except OSError:
            return None

    def update(self, version: str, expected: Mapping[str, int], state: dict[str, Any]) -> dict[str, Any]:
        """Write `state` unless another worker changed the parameters first (their `params` differ from `expected`);
        returns the state in force afterwards."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read(version)
            if current is not None and current["params"] != dict(expected):
                return current
            tmp = self.path(version).with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps({**state, "version": version, "changed_at": time.time()}, sort_keys=True))
            os.replace(tmp, self.path(version))
            return state


class EffortFollower:
    """Keeps one worker's `SearchIndex` on the effort in the state file of its version."""

    def __init__(self, store: EffortStore | None) -> None:
        self.store = store
        self.seen: dict[str, float | None] = {}

    def sync(self, engine: SearchIndex, bounds: EffortBounds, force: bool = False) -> bool:
        """Apply the version's state file if it changed since the last look; True when the effort changed."""
        if self.store is None or bounds.name is None:
            return False
        version = engine.reader.manifest.version
        stamp = self.store.stamp(version)
        if not force and version in self.seen and self.seen[version] == stamp:
            return False
        self.seen[version] = stamp
        state = self.store.read(version) if stamp is not None else None
        params = bounds.clamp(state["params"]) if state is not None else dict(bounds.tuned)
        return apply(engine, bounds, params)


def apply(engine: SearchIndex, bounds: EffortBounds, params: Mapping[str, int]) -> bool:
    """Put `params` in force for plans (None when they are the manifest's); logs one line when they change."""
    wanted: ParamsKey | None = None if dict(params) == bounds.tuned else params_key(params)
    if wanted == engine.effort.params:
        return False
    before = dict(engine.effort.params) if engine.effort.params is not None else bounds.tuned
    engine.effort.params = wanted
    LOG.info(
        "search effort of index %s: %s -> %s (tuned %s, ceiling %s=%d)",
        engine.reader.manifest.version,
        before,
        dict(params),
        bounds.tuned,
        bounds.name,
        bounds.ceiling,
    )
    return True


def state_dir(configured: str, index_root: Path) -> Path:
    return Path(configured) if configured else index_root / STATE_DIR_NAME


def apply_saved(engine: SearchIndex, directory: Path, factor: float, limits: Mapping[str, int]) -> None:
    """At load (start-up and swaps): the version's raised effort from its state file, if any (a restart keeps it)."""
    bounds = EffortBounds.of(engine.reader.manifest.default_params, factor, limits)
    EffortFollower(EffortStore(directory)).sync(engine, bounds)
