"""Cost of the live recall check: /infer req/s with sampling on (the defaults) against off, in one run.

    flock /tmp/recsys-bench.lock python -m benchmarks.live_recall_overhead --index-root ROOT --queries Q.npy \
        --workers 2 --concurrency 64 --duration 10 --rounds 3 --out benchmarks/results

Starts two `recsys-serve` on the same index — one with RECSYS_RECALL_SAMPLE_RATE=0, one with the default sampling
settings (both with RECSYS_RECALL_CORRECT=0, so both search at the same effort) — and drives POST /infer (ANN)
with `wrk` at each concurrency, alternating off / on (on / off in odd rounds) for `rounds` rounds (an idle server
costs nothing, so only the one under load uses the CPU). Reports the median req/s of each, their ratio, and what
the sampler did (samples checked and dropped, the check CPU time against the search time) from GET /index.
Writes live_recall_overhead_<tag>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.http_load import (
    Server,
    api_command,
    free_port,
    machine_info,
    run_wrk,
    server_env,
    started,
    write_bodies,
)
from index_format import layout

LOG = logging.getLogger("benchmarks.live_recall_overhead")
SETTINGS = {
    "off": {"RECSYS_RECALL_SAMPLE_RATE": "0", "RECSYS_RECALL_CORRECT": "0"},
    # the default sampling rate, CPU budget and queue; correction off so both search with the same effort (on shifted
    # traffic it would raise efSearch mid-run and the comparison would measure the extra search work)
    "on": {"RECSYS_RECALL_CORRECT": "0"},
}


def index_get(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/index")
        body: dict[str, Any] = json.loads(connection.getresponse().read())
        return body
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index-root", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True, help=".npy query vectors for the /infer bodies")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[64])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--tag", default="")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    manifest = layout.read_manifest(layout.resolve_current(args.index_root))
    queries = np.load(args.queries).astype(np.float32)
    result: dict[str, Any] = {
        "benchmark": "live_recall_overhead",
        "machine": machine_info(),
        "index": {"version": manifest.version, "kind": manifest.kind, "params": manifest.default_params},
        "queries": str(args.queries.name),
        "workers": args.workers,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "points": [],
    }
    with tempfile.TemporaryDirectory(prefix="live-recall-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        bodies = write_bodies(tmp / "ann.jsonl", queries, args.k, exact=False)
        ports = {}
        for name, extra in SETTINGS.items():
            port = free_port()
            env = server_env({**extra, "RECSYS_RECALL_STATE_DIR": str(tmp / f"state-{name}")})
            command = api_command(args.index_root, port, args.workers, "recsys-serve", [])
            server = stack.enter_context(started(Server(name, command, env, tmp / f"{name}.log", port)))
            server.wait_ready(args.workers, 300)
            ports[name] = port
        top = max(args.concurrency)
        for port in ports.values():
            run_wrk(port, "/infer", bodies, top, 2, args.warmup, 10)
        for connections in args.concurrency:
            measured: dict[str, list[float]] = {name: [] for name in ports}
            for round_ in range(args.rounds):
                order = list(ports.items()) if round_ % 2 == 0 else list(ports.items())[::-1]  # no order bias
                for name, port in order:
                    point = run_wrk(port, "/infer", bodies, connections, 2, args.duration, 10)
                    point.update(setting=name, round=round_)
                    result["points"].append(point)
                    measured[name].append(point["req_per_s"])
                    LOG.info("c=%d %s round %d: %.0f req/s", connections, name, round_, point["req_per_s"])
            off, on = statistics.median(measured["off"]), statistics.median(measured["on"])
            result.setdefault("summary", []).append(
                {
                    "concurrency": connections,
                    "off_req_per_s": off,
                    "on_req_per_s": on,
                    "on_vs_off": round(on / off, 4),
                    "slower_percent": round(100 * (1 - on / off), 2),
                }
            )
        result["sampler_after"] = {
            name: [index_get(port).get("live_recall", {}) for _ in range(4)] for name, port in ports.items()
        }
    for line in result["summary"]:
        print(
            f"c={line['concurrency']}: off {line['off_req_per_s']:.0f} req/s, on {line['on_req_per_s']:.0f} req/s "
            f"({line['slower_percent']:+.2f}% slower with sampling on)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"live_recall_overhead{('_' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
