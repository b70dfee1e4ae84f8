"""Prometheus metrics (prometheus-client), correct across uvicorn worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (recsys-serve creates a fresh directory per start), every worker writes its
values to files there and GET /metrics, answered by whichever worker gets the request, merges the files of all of
them: counters and histograms are summed over workers (dead ones included, so totals never go back), gauges marked
``liveall`` are reported per live worker with a ``pid`` label. Without it (tests, a bare ``uvicorn --factory``) the
app's own registry is exported.
"""

from __future__ import annotations

import asyncio
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.index_state import LoadedIndex

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, float("inf"))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, float("inf"))
LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")
# Request metrics are tallied in plain Python and written to prometheus_client once per event-loop turn (after the
# callbacks ready in that turn, so a scrape never misses a request already answered): in multiprocess mode every
# write is a locked mmap update, and a request made 9 of them (~12 µs of a 150 µs /infer, measured with
# benchmarks.asgi_cost and cProfile); under load one turn answers many requests.


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
        self.hidden_items = Gauge(
            "recsys_hidden_items",
            "Rows of the served index hidden by ROOT/availability.json",
            multiprocess_mode="liveall",
            registry=r,
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
        self._tally = Tally()
        self._flush_scheduled = False
        self._in_flight_now: Callable[[], int] = lambda: 0
        self._in_flight_published = 0

    def track_in_flight(self, in_flight_now: Callable[[], int]) -> None:
        """Where the requests in progress are counted (api/limits.py); published at each flush."""
        self._in_flight_now = in_flight_now

    # ---- recording -----------------------------------------------------------------------------------------

    def _labelled(self, metric: Any, *values: str) -> Any:
        """metric.labels(*values), kept: labels() costs a few µs per call and every label value here is bounded."""
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def request_done(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._tally.count((self.requests, endpoint, method, str(status)))
        self._tally.observe((self.latency, endpoint), seconds)
        self._tally.worker_requests += 1

    def record_search(self, endpoint: str, seconds: float, kinds: Iterable[str], batch: int | None) -> None:
        """A search of any endpoint: its time (search and encoding), one kind per query, and the batch size if any."""
        tally = self._tally
        tally.observe((self.search_seconds, endpoint), seconds)
        if batch is not None:
            tally.observe((self.batch_size,), batch)
        for kind in kinds:
            tally.count((self.queries, kind))

    def flush(self) -> None:
        """Write the tallied values to prometheus_client (its multiprocess files, when in that mode)."""
        tally, self._tally = self._tally, Tally()
        for (metric, *labels), count in tally.counts.items():
            (self._labelled(metric, *labels) if labels else metric).inc(count)
        for (metric, *labels), (buckets, total) in tally.histograms.items():
            child = self._labelled(metric, *labels) if labels else metric
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)
            child._sum.inc(total)
        if tally.worker_requests:
            self.worker_requests.inc(tally.worker_requests)
        in_flight = self._in_flight_now()
        if in_flight != self._in_flight_published:  # one mmap write less per flush when nothing changed
            self.in_flight.set(in_flight)
            self._in_flight_published = in_flight

    def flush_soon(self) -> None:
        """After a request: flush at the end of this event-loop turn (one pending flush at a time)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def serving(self, loaded: LoadedIndex) -> None:
        """The worker now serves `loaded` (at start-up and after each swap)."""
        if self._served_version is not None and self._served_version != loaded.version:
            self.index_info.labels(self._served_version).set(0)
        self.index_info.labels(loaded.version).set(1)
        self.index_items.set(loaded.reader.count)
        self.hidden_items.set(loaded.engine.hidden.by_file if loaded.engine.hidden is not None else 0)
        self._served_version = loaded.version

    # ---- exporting -----------------------------------------------------------------------------------------

    def render(self) -> bytes:
        self.flush()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(Path(self.multiprocess_dir))
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def worker_exiting(self) -> None:
        self.flush()
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class Tally:
    """Request metrics not yet written: counts per (metric, *labels), histogram buckets and sums."""

    __slots__ = ("counts", "histograms", "worker_requests")

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, ...], int] = {}
        self.histograms: dict[tuple[Any, ...], tuple[list[int], float]] = {}
        self.worker_requests = 0

    def count(self, key: tuple[Any, ...], amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, key: tuple[Any, ...], value: float) -> None:
        entry = self.histograms.get(key)
        if entry is None:
            entry = self.histograms[key] = ([0] * len(key[0]._upper_bounds), 0.0)
        buckets, total = entry
        buckets[bisect_left(key[0]._upper_bounds, value)] += 1
        self.histograms[key] = (buckets, total + value)


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
