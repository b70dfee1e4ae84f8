"""One chunk of users → one output table (user_id, item_ids, scores), through `Searcher` (the service's plans)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bulk_score.output import OutputDataset
from bulk_score.users import Chunk, UserSource, exclusions, parse_vectors
from index_format.searcher import Searcher


@dataclass(frozen=True)
class ScoreOptions:
    """What every user is asked (recorded in the manifest: a re-run with other options refuses to mix)."""

    k: int = 10
    exact: bool = False
    filter: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Work:
    """What an engine scores: the parts of `source` not yet in `out`, against one mapped index version."""

    source: UserSource
    out: OutputDataset
    version_dir: Path
    options: ScoreOptions
    workers: int
    batch_size: int


def output_schema(user_id_type: pa.DataType, id_type: str) -> pa.Schema:
    item = pa.string() if id_type == "str" else pa.int64()
    return pa.schema([("user_id", user_id_type), ("item_ids", pa.list_(item)), ("scores", pa.list_(pa.float32()))])


def score_chunk(searcher: Searcher, options: ScoreOptions, chunk: Chunk) -> pa.Table:
    """Top-k of every good user of the chunk, in input order; bad rows (reported before the job starts) are left
    out."""
    vectors = parse_vectors(chunk.vectors, searcher.dim)
    good = vectors.good
    excludes = exclusions(chunk)
    if excludes is not None and not good.all():
        excludes = [ids for ids, ok in zip(excludes, good.tolist(), strict=True) if ok]
    found = searcher.hits(vectors.matrix[good], options.k, options.exact, options.filter or None, excludes)
    lengths = np.fromiter((hits.rows.size for hits in found), dtype=np.int32, count=len(found))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    rows = np.concatenate([hits.rows for hits in found]) if found else np.empty(0, np.int64)
    scores = np.concatenate([hits.scores for hits in found]) if found else np.empty(0, np.float32)
    ids = searcher.reader.ids[rows]
    id_type = searcher.reader.manifest.id_type
    item_values = pa.array(ids).cast(pa.string()) if id_type == "str" else pa.array(ids, type=pa.int64())
    user_ids = chunk.user_ids if good.all() else chunk.user_ids.filter(pa.array(good))
    schema = output_schema(chunk.user_ids.type, id_type)
    return pa.Table.from_arrays(
        [
            user_ids,
            pa.ListArray.from_arrays(offsets, item_values, type=schema.field("item_ids").type),
            pa.ListArray.from_arrays(offsets, pa.array(scores, type=pa.float32())),
        ],
        schema=schema,
    )
