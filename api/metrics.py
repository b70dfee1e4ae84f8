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
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.index_state import LoadedIndex

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, float("inf"))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, float("inf"))
LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")
# Request metrics are tallied in plain Python and written to prometheus_client once per event-loop turn (after the
# callbacks ready in that turn, so a scrape never misses a request already answered): in multiprocess mode every
# write is a locked mmap update (a request makes 7), and under load one turn answers many requests. The flush writes
# them all under one lock (`ValueWriter`): with one request per turn, flushing cost ~22 µs of /infer's ~97 µs, now
# ~8 µs (benchmarks.asgi_cost, gowalla_als, with the flush replaced by a no-op for comparison).


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
        self._pending: dict[Any, float] = {}  # prometheus-client value -> amount not yet written
        self._worker_requests = 0
        self._flush_scheduled = False
        self._in_flight_now: Callable[[], int] = lambda: 0
        self._in_flight_published = 0
        self._writer = ValueWriter()

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
        self._add(self._labelled(self.requests, endpoint, method, str(status))._value, 1)
        self._observe(self._labelled(self.latency, endpoint), seconds)
        self._worker_requests += 1

    def record_search(self, endpoint: str, seconds: float, kinds: Iterable[str], batch: int | None) -> None:
        """A search of any endpoint: its time (search and encoding), one kind per query, and the batch size if any."""
        self._observe(self._labelled(self.search_seconds, endpoint), seconds)
        if batch is not None:
            self._observe(self.batch_size, batch)
        for kind in kinds:
            self._add(self._labelled(self.queries, kind)._value, 1)

    def _add(self, value: Any, amount: float) -> None:
        """Tally an increment of a prometheus-client value (a counter's, a histogram bucket's or sum)."""
        pending = self._pending
        pending[value] = pending.get(value, 0) + amount

    def _observe(self, histogram: Any, amount: float) -> None:
        self._add(histogram._buckets[bisect_left(histogram._upper_bounds, amount)], 1)
        self._add(histogram._sum, amount)

    def flush(self) -> None:
        """Write the tallied values to prometheus_client (its multiprocess files, when in that mode)."""
        pending, self._pending = self._pending, {}
        if self._worker_requests:
            pending[self.worker_requests._value] = self._worker_requests
            self._worker_requests = 0
        self._writer.add(pending.items())
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


class ValueWriter:
    """Adds amounts to many prometheus-client values at once.

    In multiprocess mode each value's own `inc` takes prometheus-client's module lock, asks the kernel for the pid
    (to notice a fork) and writes its mmap file: the 7 writes of one /infer flush cost ~20 µs of a ~95 µs request
    when each event-loop turn answers one request (benchmarks.asgi_cost). Here the lock is taken and the pid checked
    once per flush, and the values are written with prometheus-client's own file writer, so the files, the merge
    and every other writer (the live recall thread, gauges) are unchanged. Where prometheus-client's internals are
    not the expected ones (another version), or after a fork, each value's own `inc` is used
    (tests/test_ops_metrics_logs.py checks which path runs).
    """

    def __init__(self) -> None:
        self.lock = multiprocess_lock()
        self.pid = os.getpid()

    @property
    def direct(self) -> bool:
        return self.lock is not None and os.getpid() == self.pid

    def add(self, increments: Iterable[tuple[Any, float]]) -> None:
        if not self.direct:
            for value, amount in increments:
                value.inc(amount)
            return
        with self.lock:
            for value, amount in increments:
                value._value += amount
                value._timestamp = 0.0
                value._file.write_value(value._key, value._value, 0.0)


def multiprocess_lock() -> Any:
    """The lock prometheus-client's multiprocess values share (a variable of the closure that made their class), or
    None when values are not multiprocess ones or do not keep their state where `ValueWriter` writes it."""
    value_class = values.ValueClass
    if not getattr(value_class, "_multiprocess", False):
        return None
    if not all(hasattr(value_class, name) for name in ("inc", "_MmapedValue__reset")):
        return None
    lock_type = type(threading.Lock())
    for cell in getattr(value_class.inc, "__closure__", None) or ():
        if isinstance(cell.cell_contents, lock_type):
            return cell.cell_contents
    return None


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
