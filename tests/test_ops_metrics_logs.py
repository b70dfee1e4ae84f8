"""Metrics of one process (requests, latency, search time, batch sizes, query kinds, index), request ids, access
logs and the JSON log format. (Merging over worker processes: tests/test_ops_server.py.)"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ops_helpers import metric_value
from starlette.testclient import TestClient

from api.__main__ import log_config
from api.logging_setup import REQUEST_ID, JsonFormatter, RequestIdFilter, with_format
from api.metrics import forget_dead_workers
from index_format import layout

ClientFactory = Callable[..., TestClient]
DIM = 16


@pytest.fixture
def client(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    """A fresh app per test: its metrics start at zero."""
    return client_factory(hnsw_root, reload_interval=0.0, access_log=True)


def body(seed: int, **options: object) -> dict[str, object]:
    return {"name": "u", "vector": np.random.default_rng(seed).standard_normal(DIM).tolist(), **options}


def test_requests_queries_and_index_are_counted(client: TestClient, hnsw_root: Path) -> None:
    for i in range(3):
        assert client.post("/infer", json=body(i)).status_code == 200
    assert client.post("/infer", json=body(9, exact=True)).status_code == 200
    assert client.post("/infer", json=body(8, filter={"category": ["drinks"]})).status_code == 200
    batch = [body(i) for i in range(5)] + [body(i, exact=True) for i in range(2)]
    assert client.post("/batch", json=batch).status_code == 200
    assert client.post("/infer", json={"name": "u"}).status_code == 422
    assert client.get("/no/such/path/123").status_code == 404
    text = client.get("/metrics").text
    assert metric_value(text, "recsys_http_requests_total", endpoint="/infer", status="200") == 5
    assert metric_value(text, "recsys_http_requests_total", endpoint="/infer", status="422") == 1
    assert metric_value(text, "recsys_http_requests_total", endpoint="other", status="404") == 1
    assert metric_value(text, "recsys_http_request_duration_seconds_count", endpoint="/infer") == 6
    assert metric_value(text, "recsys_search_duration_seconds_count", endpoint="/infer") == 5
    assert metric_value(text, "recsys_search_duration_seconds_count", endpoint="/batch") == 1
    assert metric_value(text, "recsys_queries_total", kind="ann") == 3 + 5
    assert metric_value(text, "recsys_queries_total", kind="exact") == 1 + 2
    assert metric_value(text, "recsys_queries_total", kind="filtered") == 1
    assert metric_value(text, "recsys_batch_size_count") == 1 and metric_value(text, "recsys_batch_size_sum") == 7
    assert metric_value(text, "recsys_batch_size_bucket", le="4.0") == 0
    assert metric_value(text, "recsys_batch_size_bucket", le="8.0") == 1
    version = layout.resolve_current(hnsw_root).name
    assert metric_value(text, "recsys_index_info", version=version) == 1
    assert metric_value(text, "recsys_index_items") == 3000
    assert metric_value(text, "recsys_worker_requests") == 8  # every request before this scrape


def test_grouped_and_similar_searches_are_counted(client: TestClient) -> None:
    some_id = client.post("/infer", json=body(1, k=1)).json()["recommendations"][0]["id"]
    assert client.post("/infer", json=body(2, group_by="category", groups=2)).status_code == 200
    mixed = [body(3, group_by="category"), body(4), body(5, exact=True)]
    assert client.post("/batch", json=mixed).status_code == 200
    assert client.post("/similar", json={"id": some_id, "k": 3}).status_code == 200
    assert client.post("/similar/batch", json=[{"id": some_id}, {"id": some_id, "metric": "cosine"}]).status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "recsys_queries_total", kind="grouped") == 1 + 1
    assert metric_value(text, "recsys_queries_total", kind="similar") == 1 + 2
    assert metric_value(text, "recsys_queries_total", kind="ann") == 1 + 1
    assert metric_value(text, "recsys_queries_total", kind="exact") == 1
    for endpoint, count in (("/infer", 2), ("/batch", 1), ("/similar", 1), ("/similar/batch", 1)):
        assert metric_value(text, "recsys_search_duration_seconds_count", endpoint=endpoint) == count
    assert metric_value(text, "recsys_batch_size_sum") == 3 + 2


def test_request_ids_are_kept_or_made(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="api.access")
    given = client.get("/healthz", headers={"x-request-id": "abc-123.x:y"})
    assert given.headers["x-request-id"] == "abc-123.x:y"
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)
    for bad in (b"has space", b"x" * 129, "ünïcode".encode()):
        replaced = client.get("/healthz", headers={"x-request-id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    response = client.post("/infer", json=body(1), headers={"x-request-id": "trace-7"})
    line = next(r for r in caplog.records if getattr(r, "request_id", None) == "trace-7")
    assert line.name == "api.access"
    assert (line.method, line.path, line.status) == ("POST", "/infer", 200)  # type: ignore[attr-defined]
    assert line.index_version == response.headers["x-index-version"]  # type: ignore[attr-defined]


def test_json_log_format() -> None:
    config = with_format(log_config("info"), "json")
    assert all(formatter == {"()": JsonFormatter} for formatter in config["formatters"].values())
    assert all("request_id" in handler["filters"] for handler in config["handlers"].values())
    assert with_format(log_config("info"), "text")["formatters"] == log_config("info")["formatters"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("test_ops.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        token = REQUEST_ID.set("rid-1")
        logger.info("GET /x 200", extra={"method": "GET", "path": "/x", "status": 200, "duration_ms": 1.5})
        REQUEST_ID.reset(token)
        logger.warning("outside a request: %s", "no id")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "rid-1" and first["status"] == 200 and first["path"] == "/x"
    assert first["level"] == "info" and first["message"] == "GET /x 200" and first["ts"].endswith("Z")
    assert "request_id" not in second and second["message"] == "outside a request: no id"


def test_dead_workers_gauges_are_forgotten(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for name in (f"gauge_liveall_{dead}.db", f"gauge_liveall_{os.getpid()}.db", f"counter_{dead}.db"):
        (tmp_path / name).write_bytes(b"")
    assert forget_dead_workers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{dead}.db", f"gauge_liveall_{os.getpid()}.db"]


MULTIPROCESS_WRITES = """
import os, sys, threading
from prometheus_client import Counter
from api.metrics import Metrics
from ops_helpers import metric_value

metrics = Metrics(os.environ["PROMETHEUS_MULTIPROC_DIR"])
other = Counter("other_writer", "incremented by another thread", registry=metrics.registry)
assert metrics._writer.direct, "ValueWriter fell back to each value's inc: prometheus-client changed?"

def other_thread():  # the live recall thread writes the same files under the same lock
    for _ in range(20000):
        other.inc()

thread = threading.Thread(target=other_thread)
thread.start()
seconds = [0.0003, 0.004, 0.07, 3.0]
for i in range(4000):
    metrics.request_done("/infer", "POST", 200 if i % 4 else 422, seconds[i % 4])
    metrics.record_search("/batch", seconds[i % 4], ["ann", "exact"], 1 + i % 8)
    if i % 7 == 0:
        metrics.flush()
thread.join()
text = metrics.render().decode()
expect = {
    ("recsys_http_requests_total", (("status", "200"),)): 3000,
    ("recsys_http_requests_total", (("status", "422"),)): 1000,
    ("recsys_http_request_duration_seconds_bucket", (("le", "0.005"),)): 2000,
    ("recsys_http_request_duration_seconds_count", ()): 4000,
    ("recsys_search_duration_seconds_sum", ()): 1000 * sum(seconds),
    ("recsys_batch_size_bucket", (("le", "4.0"),)): 2000,
    ("recsys_queries_total", (("kind", "exact"),)): 4000,
    ("recsys_worker_requests", ()): 4000,
    ("other_writer_total", ()): 20000,
}
for (name, labels), value in expect.items():
    got = metric_value(text, name, **dict(labels))
    assert abs(got - value) < 1e-6 * max(1, value), (name, labels, got, value)
print("ok")
"""


def test_multiprocess_values_are_written_once_per_flush_and_add_up(tmp_path: Path) -> None:
    """The request metrics' writer (api/metrics.ValueWriter) writes prometheus-client's multiprocess files itself,
    under its lock: the merged values equal what was recorded, beside another thread writing the same file."""
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parent.parent)])
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_WRITES], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
