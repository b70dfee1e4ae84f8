"""`index-builder verify ROOT --queries FILE [--k K]`: recall and speed of the current version on any query file.

For checking a new query model (or last week's users) against an index already serving, without changing anything:
recall@k is tie-aware against exact search over the stored vectors (as the builder tunes), single-query QPS at the
manifest's default parameters and exact.
"""

from __future__ import annotations

from pathlib import Path

from index_builder.embeddings import InputError
from index_builder.inputs import load_queries
from index_builder.tuning import per_query_recall, single_query_qps
from index_format.reader import IndexReader

MAX_QUERIES = 10_000  # recall over more queries changes by less than its own sampling noise


def verify_on_queries(reader: IndexReader, path: Path, k: int | None) -> list[str]:
    """Report lines for the queries in `path` (at most MAX_QUERIES, the first ones). Raises InputError."""
    k = reader.manifest.k if k is None else k
    if not 1 <= k <= reader.count:
        raise InputError(f"--k must be between 1 and {reader.count} (the items in the index), got {k}")
    queries = load_queries(path, reader.dim)[:MAX_QUERIES]
    truth = reader.search(queries, k, exact=True)
    params = reader.default_params()
    found = reader.search(queries, k, params or None).rows
    lines = [f"queries      {queries.shape[0]} from {path.name}"]
    if reader.vectors is not None:
        recalls = per_query_recall(reader.vectors, queries, found, truth.scores, k)
        mean, worst = float(recalls.mean()), float(recalls.min())
        lines.append(
            f"recall@{k:<5}{mean:.4f} (tie-aware; lowest query {worst:.2f}; target {reader.manifest.target_recall}, "
            f"manifest {reader.manifest.recall_at_k:.4f} on {reader.manifest.tuning.get('queries_source')})"
        )
    else:  # no raw vectors to rescore with: exact rows found
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth.rows, strict=True)]
        lines.append(f"recall@{k:<5}{sum(hits) / (k * queries.shape[0]):.4f} (rows of the exact answer found)")
    if params:
        qps = single_query_qps(reader, queries, k, params, exact=False)
        lines.append(f"qps          {qps:.0f} single queries/s at {params}")
    lines.append(f"qps exact    {single_query_qps(reader, queries, k, None, exact=True):.0f} single queries/s")
    return lines
