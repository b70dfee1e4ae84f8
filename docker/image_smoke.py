"""Run in the image build, after docker/trim_venv.sh: the server's and the builder's imports still load, and the
builder still reads parquet (pyarrow was trimmed) end to end into a published index."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import faiss  # noqa: F401
import httptools  # noqa: F401
import numpy as np
import orjson  # noqa: F401
import pyarrow as pa
import pyarrow.parquet as pq
import uvloop  # noqa: F401

import api.app  # noqa: F401


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
        table = pa.table({"id": [f"p{i}" for i in range(64)], "vector": [v.tolist() for v in vectors]})
        pq.write_table(table, Path(tmp) / "products.parquet")
        command = ["index-builder", "build", str(Path(tmp) / "products.parquet"), "--out", str(Path(tmp) / "idx")]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not (Path(tmp) / "idx" / "current").is_dir():
            print(f"image smoke: index-builder on parquet failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
            return 1
    print("image smoke: imports and a parquet build work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
