"""The design this service replaces, rebuilt as a reference server for load tests.

A Flask app that loads the product embeddings and, on each POST /infer {"name": ..., "vector": [...]}, ranks every
product by its dot product with the user's vector in numpy (one BLAS thread) and answers the top k, served by
gunicorn with 4 sync workers. Same request and answer shape as the service, so the same wrk bodies drive both.

    python -m benchmarks.flask_reference --items items.npy [--ids ids.npy] --port 5002 [--workers 4] [--k 10]

(gunicorn is started with this module's `create_app` as its app factory; the items and ids are read from
FLASK_REF_ITEMS / FLASK_REF_IDS / FLASK_REF_K in each worker.) Needs the bench extra (flask, gunicorn).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

ENV_ITEMS, ENV_IDS, ENV_K = "FLASK_REF_ITEMS", "FLASK_REF_IDS", "FLASK_REF_K"


def create_app() -> Any:
    """The Flask app (gunicorn calls this in each worker)."""
    from flask import Flask, jsonify, request

    items = np.ascontiguousarray(np.load(os.environ[ENV_ITEMS]), dtype=np.float32)
    ids_path = os.environ.get(ENV_IDS, "")
    ids = np.load(ids_path).tolist() if ids_path else list(range(items.shape[0]))
    k = int(os.environ.get(ENV_K, "10"))
    app = Flask("flask_reference")

    @app.post("/infer")
    def infer() -> Any:
        body = request.get_json()
        user = np.asarray(body["vector"], dtype=np.float32)
        scores = items @ user
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return jsonify(
            {"name": body["name"], "recommendations": [{"id": ids[i], "score": float(scores[i])} for i in top]}
        )

    @app.get("/readyz")
    def ready() -> Any:
        return jsonify({"status": "ready"})

    return app


def command(items: str, ids: str | None, port: int, workers: int, k: int, host: str = "127.0.0.1") -> list[str]:
    """The gunicorn command line (and, through `environment`, its variables)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"{host}:{port}",
        "--log-level",
        "warning",
        "benchmarks.flask_reference:create_app()",
    ]


def environment(items: str, ids: str | None, k: int) -> dict[str, str]:
    """One BLAS thread per worker, as the design being replaced was deployed (several workers on few cores)."""
    return {
        ENV_ITEMS: items,
        ENV_IDS: ids or "",
        ENV_K: str(k),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flask_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--items", required=True, help=".npy of product vectors")
    p.add_argument("--ids", help=".npy of product ids (default: row numbers)")
    p.add_argument("--port", type=int, default=5002)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    os.environ.update(environment(args.items, args.ids, args.k))
    cmd = command(args.items, args.ids, args.port, args.workers, args.k)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
