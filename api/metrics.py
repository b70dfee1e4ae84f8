"""Prometheus metrics (prometheus-client), correct across uvicorn worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (recsys-serve creates a fresh directory per start), every worker writes its
values to files there and GET /metrics, answered by whichever worker gets the request, merges the files of all of
them: counters and histograms are summed over workers (dead ones included, so totals never go back), gauges marked
``liveall`` are reported per live worker with a ``pid`` label. Without it (tests, a bare ``uvicorn --factory``) the
app's own registry is exported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.index_state import LoadedIndex
from api.schemas import SearchRequest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, float("inf"))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, float("inf"))
LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


class Metrics:
    """The service's metrics, registered in a registry of their own (no module globals: several apps can coexist
    in one test process)."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        self.multiprocess_dir = multiprocess_dir or None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recsys_http_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time from request start to the last response byte, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_seconds = Histogram(
            "recsys_search_duration_seconds",
            "Search and encoding time of /infer, /batch, /similar and /similar/batch requests (body parsing "
            "excluded), by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "recsys_batch_size", "Items per /batch or /similar/batch request", buckets=BATCH_BUCKETS, registry=r
        )
        self.queries = Counter(
            "recsys_queries",
            "Queries searched, by kind: ann, exact, filtered, grouped (group_by) or similar",
            ["kind"],
            registry=r,
        )
        self.rejected = Counter(
            "recsys_rejected_requests",
            "Requests answered by overload protection: concurrency (503) or timeout (504)",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "recsys_auth_failures",
            "Requests refused by API-key checks: missing, invalid, not_admin",
            ["reason"],
            registry=r,
        )
        self.reloads = Counter(
            "recsys_index_reloads",
            "Index version changes seen by a worker, by outcome: swapped or refused",
            ["outcome"],
            registry=r,
        )
        self.index_info = Gauge(
            "recsys_index_info",
            "1 for the index version a worker serves (0 for versions it served before)",
            ["version"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.index_items = Gauge(
            "recsys_index_items", "Items in the served index", multiprocess_mode="liveall", registry=r
        )
        self.retired = Gauge(
            "recsys_index_retired_versions",
            "Replaced index versions still referenced (by requests in flight); 0 once their mappings are released",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.worker_requests = Gauge(
            "recsys_worker_requests",
            "Requests answered by each live worker since it started",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.in_flight = Gauge(
            "recsys_in_flight_requests", "Requests in progress", multiprocess_mode="livesum", registry=r
        )
        self._served_version: str | None = None
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    # ---- recording -----------------------------------------------------------------------------------------

    def _labelled(self, metric: Any, *values: str) -> Any:
        """metric.labels(*values), kept: labels() costs a few µs per call and every label value here is bounded."""
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def request_done(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._labelled(self.requests, endpoint, method, str(status)).inc()
        self._labelled(self.latency, endpoint).observe(seconds)
        self.worker_requests.inc()

    def searched(self, endpoint: str, loaded: LoadedIndex, requests: Sequence[SearchRequest], seconds: float) -> None:
        """One /infer or /batch search: its time, its batch size (for /batch) and each query's kind."""
        kinds = [query_kind(request, loaded) for request in requests]
        self.record_search(endpoint, seconds, kinds, len(requests) if endpoint == "/batch" else None)

    def record_search(self, endpoint: str, seconds: float, kinds: Iterable[str], batch: int | None) -> None:
        """A search of any endpoint: its time (search and encoding), one kind per query, and the batch size if any."""
        self._labelled(self.search_seconds, endpoint).observe(seconds)
        if batch is not None:
            self.batch_size.observe(batch)
        counts: dict[str, int] = {}
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():
            self._labelled(self.queries, kind).inc(count)

    def serving(self, loaded: LoadedIndex) -> None:
        """The worker now serves `loaded` (at start-up and after each swap)."""
        if self._served_version is not None and self._served_version != loaded.version:
            self.index_info.labels(self._served_version).set(0)
        self.index_info.labels(loaded.version).set(1)
        self.index_items.set(loaded.reader.count)
        self._served_version = loaded.version

    # ---- exporting -----------------------------------------------------------------------------------------

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(Path(self.multiprocess_dir))
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def worker_exiting(self) -> None:
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def query_kind(request: SearchRequest, loaded: LoadedIndex) -> str:
    """ann, exact (asked for, or an exact index) or filtered."""
    if request.exact or loaded.reader.family == "flat":
        return "exact"
    return "filtered" if request.filter is not None else "ann"


def forget_dead_workers(directory: Path) -> list[int]:
    """Drop the per-worker gauge files of processes that no longer exist (a worker killed without a clean shutdown,
    and restarted by the supervisor); counters and histograms keep their files so totals stay monotonic."""
    dead = set()
    for path in directory.glob("gauge_live*.db"):
        match = LIVE_GAUGE_FILE.match(path.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return sorted(dead)
