"""Live recall: what recall@k the service's approximate answers actually reach on the traffic it gets.

Each worker samples a fraction of its ANN queries (plain and filtered through the ANN index; never `exact: true`
requests, exact plans, grouped requests, or requests carrying their own `params`) after the answer is computed, and
queues (query, plan, returned rows) in a bounded deque: the request is never delayed, and when the queue is full the
sample is dropped (counted). A background thread per worker re-searches each sample exactly (the exact method the
planner picks for `exact: true`) and scores the answer tie-aware as the builder does (index_builder/tuning.py),
spending at most RECSYS_RECALL_CPU_BUDGET × the worker's search time of CPU (thread CPU time).

Counts are kept per (index version, kind, effort in force) as Prometheus counters — samples and the sum of per-query
recall — so the server-wide recall is a PromQL division and the estimate restarts at each version and each effort
change. The interval is Wilson's 95% score interval over the sampled queries with p = mean per-query recall: a
per-query recall lies in [0, 1], so its variance is at most p(1 − p), and the interval is conservative.

Self-correction (RECSYS_RECALL_CORRECT): when the estimate at the effort in force is clearly below the manifest's
target (upper bound below it, after RECSYS_RECALL_MIN_SAMPLES), or not clearly above it after
RECSYS_RECALL_DECIDE_SAMPLES (lower bound below it), the effort goes one rung up the builder's ladder
(api/effort.py), up to the ceiling.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.multiprocess import MultiProcessCollector

from api.effort import EffortBounds, EffortFollower, EffortStore, next_rung, state_dir
from api.index_state import IndexHolder, LoadedIndex
from api.settings import Settings
from index_builder.tuning import per_query_recall
from index_format.engine import Hits
from index_format.plan import Method, SearchPlan, plan_search
from index_format.query import Query

LOG = logging.getLogger(__name__)

Z95 = 1.959964  # two-sided 95%
SAMPLES = "recsys_live_recall_samples"
HITS = "recsys_live_recall_hits"
Key = tuple[str, str, str]  # version, kind, effort label


@dataclass(frozen=True)
class RecallConfig:
    rate: float  # fraction of eligible queries sampled (0: off)
    cpu_budget: float  # exact-check CPU seconds per second of the worker's search time
    queue: int  # samples waiting at most; more are dropped
    correct: bool  # raise the effort when the estimate says recall is below the target
    min_samples: int  # samples at one effort before it may be raised for an upper bound below the target
    decide_samples: int  # samples after which a lower bound below the target raises it too
    max_effort_factor: float  # ceiling: tuned effort × this (and the parameter's per-request limit)
    interval: float  # seconds between looks at the shared state (effort file, server-wide counts)
    state_dir: Path

    @classmethod
    def of(cls, settings: Settings) -> RecallConfig:
        return cls(
            rate=settings.recall_sample_rate,
            cpu_budget=settings.recall_cpu_budget,
            queue=settings.recall_queue,
            correct=settings.recall_correct,
            min_samples=settings.recall_min_samples,
            decide_samples=settings.recall_decide_samples,
            max_effort_factor=settings.recall_max_effort_factor,
            interval=settings.recall_interval,
            state_dir=state_dir(settings.recall_state_dir, settings.index_root),
        )


def wilson(mean: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a mean of n values in [0, 1] (conservative for non-binary values)."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (mean + z * z / (2 * n)) / denominator
    half = z * math.sqrt(max(mean * (1 - mean), 0.0) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def effort_label(params: dict[str, int]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(params.items())) or "exact"


def bounds_of(loaded: LoadedIndex, factor: float) -> EffortBounds:
    return EffortBounds.of(loaded.reader.manifest.default_params, factor, loaded.rules.param_limits)


def sample_recall(loaded: LoadedIndex, query: Query, plan: SearchPlan, rows: np.ndarray[Any, Any]) -> float | None:
    """Tie-aware recall@k of one answer against the exact answer to the same query (same filter, exclusions, hidden
    products and delta segment); None when no row qualifies."""
    engine, reader = loaded.engine, loaded.reader
    truth_plan = plan_search(
        reader,
        loaded.policy,
        plan.k,
        exact=True,
        allowed=plan.allowed,
        excluded=plan.excluded,
        hidden=engine.hidden,
        delta_rows=plan.delta_rows,
    )
    truth = engine.search([query], [truth_plan])[0]
    k = int(truth.rows.size)
    if k == 0:
        return None
    if reader.vectors is None:  # no raw vectors to rescore with (IVF): exact rows found
        return float(np.isin(rows[:k], truth.rows).sum()) / k
    answered = rows[:k]
    found = np.full((1, k), -1, dtype=np.int64)
    found[0, : answered.size] = np.arange(answered.size)  # rows of the gathered vectors below
    xq = np.ascontiguousarray(query.vector[None], dtype=np.float32)
    vectors = engine.vectors_of(answered) if answered.size else np.zeros((1, reader.dim), np.float32)
    return float(per_query_recall(vectors, xq, found, truth.scores[None], k)[0])


class RecallMetrics:
    """The live recall metrics, in the service's registry (their multiprocess files merge across workers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["version", "kind", "effort"]
        self.samples = Counter(
            SAMPLES, "ANN queries checked exactly, by version, kind and effort", labels, registry=registry
        )
        self.hits = Counter(
            HITS, "Sum of the checked queries' tie-aware recall@k (divide by samples)", labels, registry=registry
        )
        self.dropped = Counter(
            "recsys_live_recall_dropped",
            "Samples dropped: queue_full (checks behind their CPU budget) or stale (the version was replaced)",
            ["reason"],
            registry=registry,
        )
        self.effort = Gauge(
            "recsys_search_effort",
            "Effort parameter in force per worker (raised above the manifest's by the live recall check)",
            ["version", "param"],
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.at_ceiling = Gauge(
            "recsys_search_effort_at_ceiling",
            "1 when live recall is below the target even at the effort ceiling",
            ["version"],
            multiprocess_mode="liveall",
            registry=registry,
        )


@dataclass
class Sample:
    loaded: weakref.ref[LoadedIndex]
    effort: str
    query: Query
    plan: SearchPlan
    rows: np.ndarray[Any, Any]


class LiveRecall:
    """One per worker: `wants` and `offer` on the request path (cheap), the checks on a thread of its own."""

    def __init__(
        self, config: RecallConfig, holder: IndexHolder, registry: CollectorRegistry, multiprocess_dir: str | None
    ) -> None:
        self.config = config
        self.holder = holder
        self.metrics = RecallMetrics(registry)
        self.multiprocess_dir = multiprocess_dir
        self.store = EffortStore(config.state_dir)
        self.follower = EffortFollower(self.store)
        self.queue: deque[Sample] = deque()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.search_seconds = 0.0  # this worker's search time (the budget's base)
        self.check_seconds = 0.0  # CPU time spent checking samples
        self.local: dict[Key, list[float]] = {}  # this worker's [samples, sum of recall]
        self.dropped = {"queue_full": 0, "stale": 0}
        self.flushed_full = 0
        self.ceiling_logged: set[str] = set()
        self._random = random.random

    # ---- request path ----------------------------------------------------------------------------------------

    def wants(self) -> bool:
        """Whether to keep this request's answer for a check (one random draw)."""
        return self._random() < self.config.rate

    def searched(self, seconds: float) -> None:
        self.search_seconds += seconds

    def offer(
        self, loaded: LoadedIndex, queries: Sequence[Query], plans: Sequence[SearchPlan], hits: list[Hits]
    ) -> None:
        """Queue the answers worth checking; drops (and counts) what does not fit. Never blocks."""
        current = loaded.engine.effort.params
        label = effort_label(dict(current) if current is not None else loaded.reader.manifest.default_params)
        for query, plan, found in zip(queries, plans, hits, strict=True):
            if plan.method is not Method.ANN or query.params:
                continue
            if len(self.queue) >= self.config.queue:
                self.dropped["queue_full"] += 1
                continue
            self.queue.append(Sample(weakref.ref(loaded), label, query, plan, found.rows))
        self.wake.set()

    # ---- the checking thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.rate <= 0 and not self.config.correct:
            return
        self.thread = threading.Thread(target=self._run, name="live-recall", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _run(self) -> None:
        next_look = 0.0
        while not self.stopping.is_set():
            self.wake.wait(self.config.interval)
            self.wake.clear()
            try:
                self.drain(until=max(next_look, time.monotonic() + 0.01))
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + self.config.interval
                    self.look()
            except Exception:
                LOG.exception("live recall check failed")

    def drain(self, until: float = math.inf) -> int:
        """Check queued samples while within the CPU budget, until the monotonic time `until` (so a queue that never
        empties does not hold off the looks at the estimate); returns how many were checked."""
        checked = 0
        while self.queue and not self.stopping.is_set() and time.monotonic() < until:
            budget = self.config.cpu_budget
            if budget <= 0 or self.check_seconds > budget * self.search_seconds:
                self._drop_stale()
                break
            sample = self.queue.popleft()
            loaded = sample.loaded()
            if loaded is None or loaded is not self.holder.current:
                self._count_drop("stale")
                continue
            started = time.thread_time()
            recall = sample_recall(loaded, sample.query, sample.plan, sample.rows)
            self.check_seconds += time.thread_time() - started
            if recall is not None:
                self.record((loaded.version, sample.plan.kind, sample.effort), recall)
                checked += 1
        return checked

    def _drop_stale(self) -> None:
        """Waiting samples of replaced versions are dropped at once (they keep the old version's maps alive)."""
        current = self.holder.current
        kept = [sample for sample in list(self.queue) if sample.loaded() is current]
        for _ in range(len(self.queue) - len(kept)):
            self._count_drop("stale")
        self.queue = deque(kept)

    def _count_drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        self.metrics.dropped.labels(reason).inc()

    def record(self, key: Key, recall: float) -> None:
        entry = self.local.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += recall
        self.metrics.samples.labels(*key).inc()
        self.metrics.hits.labels(*key).inc(recall)

    def look(self) -> None:
        """Follow the shared effort file, publish the effort gauges, and raise the effort if the estimate says so."""
        loaded = self.holder.current
        if loaded is None:
            return
        unflushed = self.dropped["queue_full"] - self.flushed_full  # counted on the request path, published here
        if unflushed > 0:
            self.metrics.dropped.labels("queue_full").inc(unflushed)
            self.flushed_full += unflushed
        bounds = bounds_of(loaded, self.config.max_effort_factor)
        self.follower.sync(loaded.engine, bounds)
        params = self.params_in_force(loaded)
        if bounds.name is not None:
            self.metrics.effort.labels(loaded.version, bounds.name).set(params[bounds.name])
        if self.config.correct and bounds.name is not None:
            self.correct(loaded, bounds, params)

    def params_in_force(self, loaded: LoadedIndex) -> dict[str, int]:
        current = loaded.engine.effort.params
        return dict(current) if current is not None else dict(loaded.reader.manifest.default_params)

    def correct(self, loaded: LoadedIndex, bounds: EffortBounds, params: dict[str, int]) -> None:
        assert bounds.name is not None
        target = loaded.reader.manifest.target_recall
        label = effort_label(params)
        estimates = self.estimates(loaded.version).get(label, {})
        low = [(kind, e) for kind, e in estimates.items() if self.too_low(e, target)]
        if not low:
            return
        kind, estimate = low[0]
        higher = next_rung(bounds.name, params[bounds.name], bounds.ceiling)
        why = (
            f"live recall@k {estimate['recall']:.4f} [{estimate['interval'][0]:.4f}, {estimate['interval'][1]:.4f}] "
            f"over {estimate['samples']} {kind} queries at {label}, target {target}"
        )
        if higher is None:
            self.metrics.at_ceiling.labels(loaded.version).set(1)
            if loaded.version not in self.ceiling_logged:
                self.ceiling_logged.add(loaded.version)
                LOG.warning(
                    "index %s: %s; the effort ceiling %s=%d cannot reach it, keeping the ceiling",
                    loaded.version,
                    why,
                    bounds.name,
                    bounds.ceiling,
                )
            return
        raised = {**params, bounds.name: higher}
        state = {"params": raised, "tuned": bounds.tuned, "ceiling": bounds.ceiling, "reason": why}
        self.store.update(loaded.version, params, state)
        if self.follower.sync(loaded.engine, bounds, force=True):
            LOG.info("index %s: raised %s to %d: %s", loaded.version, bounds.name, higher, why)

    def too_low(self, estimate: dict[str, Any], target: float) -> bool:
        n = estimate["samples"]
        low, high = estimate["interval"]
        if n >= self.config.min_samples and high < target:
            return True
        return bool(n >= self.config.decide_samples and low < target)

    # ---- estimates -------------------------------------------------------------------------------------------

    def counts(self) -> tuple[dict[Key, list[float]], str]:
        """[samples, sum of recall] per key: server-wide from the multiprocess files when there are, else this
        worker's."""
        if self.multiprocess_dir is None:
            return self.local, "worker"
        files = [str(p) for p in Path(self.multiprocess_dir).glob("counter_*.db")]
        out: dict[Key, list[float]] = {}
        for family in MultiProcessCollector.merge(files, accumulate=True):  # type: ignore[no-untyped-call]
            if family.name not in (SAMPLES, HITS):
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels["version"], sample.labels["kind"], sample.labels["effort"])
                entry = out.setdefault(key, [0, 0.0])
                entry[0 if family.name == SAMPLES else 1] += sample.value
        return out, "server"

    def estimates(self, version: str) -> dict[str, dict[str, dict[str, Any]]]:
        """effort label → kind → {samples, recall, interval, scope} for one version."""
        counts, scope = self.counts()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (found_version, kind, label), (n, total) in sorted(counts.items()):
            if found_version != version or n <= 0:
                continue
            mean = total / n
            low, high = wilson(mean, int(n))
            out.setdefault(label, {})[kind] = {
                "samples": int(n),
                "recall": round(mean, 4),
                "interval": [round(low, 4), round(high, 4)],
                "scope": scope,
            }
        return out

    def describe(self, loaded: LoadedIndex) -> dict[str, Any]:
        """The `live_recall` part of GET /index."""
        bounds = bounds_of(loaded, self.config.max_effort_factor)
        params = self.params_in_force(loaded)
        by_effort = self.estimates(loaded.version)
        return {
            "target_recall": loaded.reader.manifest.target_recall,
            "manifest_recall_at_k": loaded.reader.manifest.recall_at_k,
            "estimate": by_effort.get(effort_label(params), {}),
            "by_effort": by_effort,
            "effort": {
                "tuned": bounds.tuned,
                "current": params,
                "ceiling": {bounds.name: bounds.ceiling} if bounds.name else {},
                "at_ceiling": loaded.version in self.ceiling_logged,
                "state_file": str(self.store.path(loaded.version)),
                "correct": self.config.correct,
            },
            "sampling": {
                "pid": os.getpid(),
                "rate": self.config.rate,
                "cpu_budget": self.config.cpu_budget,
                "queued": len(self.queue),
                "queue_max": self.config.queue,
                "dropped": dict(self.dropped),
                "check_cpu_seconds": round(self.check_seconds, 3),
                "search_seconds": round(self.search_seconds, 3),
            },
        }
