"""One scoring job: check the index, the input and OUT before anything is written, then let an engine score the
parts not written yet, then record counts and timings in the manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from bulk_score.output import OutputDataset
from bulk_score.progress import Progress
from bulk_score.scoring import ScoreOptions, Work
from bulk_score.users import BadInput, UserSource, parse_vectors
from index_format.searcher import Searcher, SearchError

SHOWN_BAD_ROWS = 5


@dataclass(frozen=True)
class JobConfig:
    users: Path
    index_root: Path
    out: Path
    options: ScoreOptions
    user_ids: Path | None = None
    engine: str = "local"
    ray_address: str | None = None
    workers: int = 1
    batch_size: int = 10_000
    skip_bad: bool = False


def run_job(config: JobConfig, stream: TextIO | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the final manifest. Raises BadInput, SearchError, output.Mismatch or
    layout.FormatError for problems of the input, the options, OUT or the index."""
    started = time.monotonic()
    source = UserSource.open(config.users, config.user_ids)
    if config.engine == "ray" and source.is_npy:
        raise BadInput("--engine ray reads parquet (Ray Data read_parquet): convert the .npy users to parquet first")
    # Checksums are checked once here; workers map the same version directory without re-hashing it.
    searcher = Searcher.open(config.index_root, warm=False)
    version_dir = searcher.reader.version_dir
    searcher.filter_key(config.options.filter)  # SearchError for an unknown field or value
    source.check_schema(searcher.reader.manifest.id_type)
    rejected = find_bad_rows(source, config.batch_size, searcher.dim)
    if rejected.num_rows and not config.skip_bad:
        raise BadInput(describe_bad_rows(rejected))
    out = OutputDataset(config.out)
    identity = {
        "index_version": searcher.version,
        "options": {
            **config.options.describe(),
            "engine": config.engine,
            "batch_size": config.batch_size,
            "skip_bad": config.skip_bad,
        },
        "input": source.describe(),
    }
    manifest = out.prepare(identity)
    if config.skip_bad:
        out.write_rejected(rejected)
    total = source.count() - rejected.num_rows
    progress = Progress(total, stream=stream)
    if rejected.num_rows:
        progress.message(f"skipping {rejected.num_rows} bad rows, listed in {out.path / '_rejected.parquet'}")
    checked = time.monotonic()
    work = Work(source, out, version_dir, config.options, config.workers, config.batch_size)
    if config.engine == "ray":
        from bulk_score.ray_engine import run_ray

        run_ray(work, config.ray_address, progress)
    else:
        from bulk_score.local import run_local

        run_local(work, progress)
    progress.finish()
    finished = time.monotonic()
    engine_seconds = finished - checked - progress.startup_seconds  # scoring, and stopping the engine
    scoring_seconds = engine_seconds if progress.scoring_seconds is None else progress.scoring_seconds
    parts = sorted(out.path.glob("part-*.parquet"))
    written = sum(pq.ParquetFile(path).metadata.num_rows for path in parts)
    manifest.update(
        status="complete",
        index={
            "version": searcher.version,
            "root": str(config.index_root),
            "kind": searcher.reader.manifest.kind,
            "count": searcher.reader.count,
            "dim": searcher.dim,
        },
        counts={
            "users": written + rejected.num_rows,
            "scored": written,
            "rejected": rejected.num_rows,
            "parts": len(parts),
        },
        timings={
            "checks_seconds": round(checked - started, 3),
            "startup_seconds": round(progress.startup_seconds, 3),
            "scoring_seconds": round(scoring_seconds, 3),
            "shutdown_seconds": round(engine_seconds - scoring_seconds, 3),
            "users_scored_this_run": progress.scored,
            "users_per_second": round(progress.scored / max(scoring_seconds, 1e-9), 1),
            "workers": config.workers,
        },
        completed_at=time.time(),
    )
    out.save(manifest)
    return manifest


def find_bad_rows(source: UserSource, batch_size: int, dim: int) -> pa.Table:
    """(user_id, reason) of every row whose vector is missing, of the wrong length, or not finite."""
    ids: list[pa.Array] = []
    reasons: list[str] = []
    for chunk in source.chunks(batch_size):
        problems = parse_vectors(chunk.vectors, dim).problems
        if problems:
            positions = sorted(problems)
            ids.append(chunk.user_ids.take(pa.array(positions)))
            reasons.extend(problems[p] for p in positions)
    if not ids:
        return pa.table({"user_id": pa.array([], type=pa.string()), "reason": pa.array([], type=pa.string())})
    return pa.table({"user_id": pa.concat_arrays(ids), "reason": pa.array(reasons, type=pa.string())})


def describe_bad_rows(rejected: pa.Table) -> str:
    shown = "; ".join(
        f"user_id {user!r}: {reason}"
        for user, reason in zip(
            rejected.column("user_id").to_pylist()[:SHOWN_BAD_ROWS],
            rejected.column("reason").to_pylist()[:SHOWN_BAD_ROWS],
            strict=True,
        )
    )
    more = f" (and {rejected.num_rows - SHOWN_BAD_ROWS} more)" if rejected.num_rows > SHOWN_BAD_ROWS else ""
    return (
        f"{rejected.num_rows} bad user rows, nothing written: {shown}{more}. "
        "Fix them, or pass --skip-bad to score the others and list these in _rejected.parquet"
    )


__all__ = ["JobConfig", "SearchError", "run_job"]
