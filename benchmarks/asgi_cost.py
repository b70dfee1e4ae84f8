"""In-process cost of one request through the ASGI app, without a server: where the service's time goes.

    python -m benchmarks.asgi_cost --index-root indexes/bench/gowalla_als \
        --queries ../shared/data/gowalla_als/queries.npy

HTTP load (benchmarks.http_load) measures what clients see, but on 2 cores the servers and wrk share the CPU and
the figures move by 10–30% between runs. This calls the apps directly with prepared ASGI messages, one request at a
time on one thread, and reports µs per request for: the floor app (benchmarks/floor_app.py), the service's own
`POST /_floor` (a fixed answer added to the service's hot routes for this benchmark: its layers, no search),
`POST /infer` (ANN at the index's tuned params; one request per event-loop turn, and 16 per turn as under load)
and `POST /infer` with `exact: true`. The difference between two rows is what the service adds between them.
Metrics run in multiprocess mode (a temporary PROMETHEUS_MULTIPROC_DIR) as under recsys-serve. Writes
asgi_cost_<tag>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import common

REPO = Path(__file__).resolve().parent.parent
FLOOR_ANSWER = orjson.dumps({"name": "floor", "recommendations": [{"id": f"p{i}", "score": 1.0} for i in range(10)]})
Message = dict[str, Any]


async def call(app: Any, path: str, body: bytes) -> int:
    """One POST through the ASGI app; returns the response status."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes: the request is over before
        return {"type": "http.disconnect"}

    status = 0

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 5000),
        "state": {},
    }
    await app(scope, receive, send)
    return status


async def per_request_us(
    app: Any, path: str, bodies: list[bytes], requests: int, repeats: int, per_turn: int = 1
) -> float:
    """Best of `repeats` timings of `requests` sequential calls (after a warm-up), in µs per request; the event loop
    turns once every `per_turn` requests (the service writes its request metrics once per turn: 1 is the worst
    case, a server under load answers several requests per turn)."""
    for body in bodies[:100]:
        status = await call(app, path, body)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(requests):
            await call(app, path, bodies[i % len(bodies)])
            if i % per_turn == 0:
                await asyncio.sleep(0)
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return round(best, 1)


def request_bodies(queries: np.ndarray, exact: bool) -> list[bytes]:
    return [
        orjson.dumps({"name": f"u{i}", "vector": [float(x) for x in q], "exact": exact})
        for i, q in enumerate(queries[:500])
    ]


async def measure(index_root: Path, queries: np.ndarray, requests: int, repeats: int) -> dict[str, float]:
    from api.app import create_app
    from api.settings import Settings
    from benchmarks.floor_app import FloorSettings
    from benchmarks.floor_app import create_app as create_floor

    async def fixed_answer(body: Any) -> tuple[bytes, str]:
        return FLOOR_ANSWER, "floor"

    settings = Settings.from_env({"RECSYS_INDEX_ROOT": str(index_root)})
    app = create_app(settings, extra_hot_routes={"/_floor": fixed_answer})
    floor = create_floor(FloorSettings())
    ann, exact = request_bodies(queries, exact=False), request_bodies(queries, exact=True)
    out = {}
    async with app.router.lifespan_context(app):
        out["floor_app"] = await per_request_us(floor, "/infer", ann, requests, repeats)
        out["service_floor"] = await per_request_us(app, "/_floor", ann, requests, repeats)
        out["infer_ann"] = await per_request_us(app, "/infer", ann, requests, repeats)
        out["infer_ann_16_per_turn"] = await per_request_us(app, "/infer", ann, requests, repeats, per_turn=16)
        out["infer_exact"] = await per_request_us(app, "/infer", exact, max(1, requests // 10), repeats)
    return out


def run_on_server_loop(coroutine: Any) -> Any:
    """Run on uvloop, the event loop recsys-serve uses (a dependency), so per-request loop work (the time budget's
    timer, the turn that writes metrics) costs what it costs in the server; asyncio's own loop where uvloop is
    missing."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.asgi_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--index-root", type=Path, required=True, help="a published index root (ROOT/current)")
    p.add_argument("--queries", type=Path, required=True, help=".npy of user vectors (the first 500 are used)")
    p.add_argument("--requests", type=int, default=5000, help="requests per timing (exact: a tenth)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tag", default="")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    with tempfile.TemporaryDirectory(prefix="asgi-cost-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read when prometheus_client is first imported
        try:
            queries = np.ascontiguousarray(np.load(args.queries), dtype=np.float32)
            result = run_on_server_loop(measure(args.index_root, queries, args.requests, args.repeats))
        finally:
            if before is None:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            else:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = before
    for name, value in result.items():
        print(f"{name:14s} {value:8.1f} µs per request")
    tag = args.tag or args.index_root.resolve().name
    payload = {
        "benchmark": "asgi_cost",
        "command": [sys.executable, "-m", "benchmarks.asgi_cost", *(argv if argv is not None else sys.argv[1:])],
        "machine": common.machine_info(),
        "index_root": str(args.index_root),
        "us_per_request": result,
    }
    common.write_json(args.out / f"asgi_cost_{tag}.json", payload)
    print(f"wrote {args.out / f'asgi_cost_{tag}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
