"""Several query samples (`index-builder build --queries A --queries B`): tune so that each one reaches the target.

Users retrain and change their query models; last week's users and a new model's queries are different samples
of traffic. Each set is split into its own tuning and held-out halves, a sweep point counts as reaching the target
only if every set's tuning half does (tuning.reaches_target), and the manifest reports held-out recall per set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index_builder import tuning
from index_builder.inputs import load_queries
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

QuerySets = tuple[tuple[str, int], ...]  # (name, queries) of each set, in the order they are concatenated


def load_query_sets(paths: list[Path], dim: int) -> tuple[F32, QuerySets]:
    """All sets concatenated, and their names and sizes (a name repeated gets its position appended)."""
    arrays: list[F32] = []
    sets: list[tuple[str, int]] = []
    for position, path in enumerate(paths):
        queries = load_queries(path, dim)
        name = path.name if path.name not in [n for n, _ in sets] else f"{path.name}#{position + 1}"
        arrays.append(queries)
        sets.append((name, int(queries.shape[0])))
    return np.ascontiguousarray(np.concatenate(arrays)), tuple(sets)


def split_sets(queries: F32, sets: QuerySets, seed: int, cap: int) -> tuning.QuerySplit:
    """Each set split into its own tuning and held-out halves (each at most `cap`), labelled by set."""
    tunes, heldouts, tune_labels, heldout_labels = [], [], [], []
    start = 0
    for label, (_, count) in enumerate(sets):
        tune, heldout = tuning.split_queries(queries[start : start + count], seed, cap)
        start += count
        tunes.append(tune)
        heldouts.append(heldout)
        tune_labels.append(np.full(tune.shape[0], label, dtype=np.int64))
        heldout_labels.append(np.full(heldout.shape[0], label, dtype=np.int64))
    return tuning.QuerySplit(
        np.ascontiguousarray(np.concatenate(tunes)),
        np.ascontiguousarray(np.concatenate(heldouts)),
        "files:" + ",".join(name for name, _ in sets),
        tune_sets=np.concatenate(tune_labels),
        heldout_sets=np.concatenate(heldout_labels),
        set_names=tuple(name for name, _ in sets),
    )


def per_set_recall(version_dir: Path, split: tuning.QuerySplit, truth_heldout: F32, k: int) -> list[dict[str, Any]]:
    """Held-out tie-aware recall@k of each set at the chosen default parameters (for the manifest and inspect)."""
    reader = IndexReader.open(version_dir, verify=False)
    rows = reader.search(split.heldout, k, reader.default_params() or None).rows
    vectors = reader.vectors
    if vectors is None:
        recalls = _rows_recall(rows, reader.search(split.heldout, k, exact=True).rows, k)
    else:
        recalls = tuning.per_query_recall(vectors, split.heldout, rows, truth_heldout, k)
    assert split.heldout_sets is not None
    out = []
    for label, name in enumerate(split.set_names):
        mine = recalls[split.heldout_sets == label]
        out.append({"name": name, "n_heldout": int(mine.size), "recall_heldout": round(float(mine.mean()), 4)})
    return out


def _rows_recall(found: I64, truth: I64, k: int) -> npt.NDArray[np.float64]:
    hits = [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
    return np.array(hits, dtype=np.float64)
