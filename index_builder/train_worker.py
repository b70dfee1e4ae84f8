"""Train one faiss index in a child process: `python -m index_builder.train_worker FACTORY DIM SAMPLE.npy OUT`.

faiss's train() cannot be interrupted, and k-means time on a shared machine can be 10x its estimate (measured: an
IVF2048,PQ32 trial on 16k rows took 112 s at load average 11). The builder trains in this child and kills it when a
candidate's share of the tuning budget runs out, so the budget holds whatever the machine is doing.
"""

from __future__ import annotations

import sys

import faiss
import numpy as np


def main(argv: list[str]) -> int:
    factory, dim, sample_path, out_path = argv
    index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    index.train(np.load(sample_path))
    faiss.write_index(index, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
