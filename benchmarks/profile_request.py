"""Where one request's time goes: cProfile of POST /infer through the ASGI app in-process (no server).

    python -m benchmarks.profile_request --index-root indexes/bench/gowalla_als \
        --queries ../shared/data/gowalla_als/queries.npy [--exact] [--requests 20000] [--top 30]

Prints the functions with the most own time (cProfile inflates Python-level costs against C calls such as the
faiss search: read it for proportions and call counts, and `benchmarks.asgi_cost` for µs). For a live server under
load, sample its workers instead: `py-spy record -o profile.svg --pid WORKER_PID --duration 20` while
`benchmarks.http_load` runs (pip install py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.asgi_cost import call, request_bodies, run_on_server_loop


async def profile(index_root: Path, queries: np.ndarray, exact: bool, requests: int) -> cProfile.Profile:
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings.from_env({"RECSYS_INDEX_ROOT": str(index_root)}))
    bodies = request_bodies(queries, exact=exact)
    profiler = cProfile.Profile()
    async with app.router.lifespan_context(app):
        for body in bodies:
            await call(app, "/infer", body)
        profiler.enable()
        for i in range(requests):
            await call(app, "/infer", bodies[i % len(bodies)])
            await asyncio.sleep(0)  # one event-loop turn per request: per-turn work (metrics) is included
        profiler.disable()
    return profiler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_request", description=__doc__.split("\n\n")[0])
    p.add_argument("--index-root", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True, help=".npy of user vectors (the first 500 are used)")
    p.add_argument("--exact", action="store_true", help="profile exact: true requests")
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="profile-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # as under recsys-serve
        queries = np.ascontiguousarray(np.load(args.queries), dtype=np.float32)
        profiler = run_on_server_loop(profile(args.index_root, queries, args.exact, args.requests))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
