"""`--engine ray`: the same job on Ray Data, for clusters whose nodes all see the index root and OUT (shared storage).

read_parquet → map_batches(ScoreActor: maps the index once per actor) → write_parquet. Ray schedules the actors,
retries failed tasks and shows its own progress; nothing here distributes work. Ray's writer names its files itself
and does not write them atomically, so each group of input files is written into a hidden staging directory, then
its files are renamed into OUT and a `_ray-done-<first>-<n>` marker records the group: a re-run skips the input
files of marked groups and discards anything unmarked (a killed run's staging and half-committed files).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import faiss
import pyarrow as pa

from bulk_score.progress import Progress
from bulk_score.scoring import ScoreOptions, Work, score_chunk
from bulk_score.users import EXCLUDE, USER_ID, VECTOR, Chunk
from index_format.searcher import Searcher

FILES_PER_GROUP_PER_WORKER = 4  # input files committed together: a killed run redoes at most one group


class ScoreActor:
    """One per Ray actor: maps the index once, then scores every batch Ray hands it."""

    def __init__(self, version_dir: str, options: ScoreOptions) -> None:
        faiss.omp_set_num_threads(1)
        self.searcher = Searcher.open(version_dir, verify=False)
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        exclude = batch.column(EXCLUDE).combine_chunks() if EXCLUDE in batch.column_names else None
        chunk = Chunk("", batch.column(USER_ID).combine_chunks(), batch.column(VECTOR).combine_chunks(), exclude)
        return score_chunk(self.searcher, self.options, chunk)


def _marker(first: int, count: int) -> str:
    return f"_ray-done-{first:05d}-{count:05d}"


def _committed(out: Path) -> set[int]:
    done: set[int] = set()
    for marker in out.glob("_ray-done-*"):
        first, count = (int(x) for x in marker.name.removeprefix("_ray-done-").split("-"))
        done.update(range(first, first + count))
    return done


def _discard_uncommitted(out: Path) -> None:
    for staging in out.glob(".ray-staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    markers = {m.name for m in out.glob("_ray-done-*")}
    for part in out.glob("part-r*.parquet"):
        first, count = part.name.removeprefix("part-r").split("-")[:2]
        if _marker(int(first), int(count)) not in markers:
            part.unlink()


def run_ray(work: Work, address: str | None, progress: Progress) -> None:
    import pyarrow.parquet as pq
    import ray

    source, out = work.source, work.out

    _discard_uncommitted(out.path)
    done = _committed(out.path)
    rows = [pq.ParquetFile(path).metadata.num_rows for path in source.files]
    progress.advance(sum(rows[i] for i in done), skipped=True)
    todo = [i for i in range(len(source.files)) if i not in done]
    group = FILES_PER_GROUP_PER_WORKER * work.workers
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        for start in range(0, len(todo), group):
            indices = todo[start : start + group]
            # Contiguous runs only, so that a marker (first, count) names exactly these files.
            runs = _contiguous(indices)
            for first, count in runs:
                _score_files(work, first, count)
                progress.advance(sum(rows[first : first + count]))
    finally:
        ray.shutdown()


def _contiguous(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and runs[-1][0] + runs[-1][1] == index:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


def _score_files(work: Work, first: int, count: int) -> None:
    import ray.data

    source, out = work.source, work.out.path

    files = [str(path) for path in source.files[first : first + count]]
    columns = [USER_ID, VECTOR, *([EXCLUDE] if source.has_exclude() else [])]
    staging = out / f".ray-staging-{first:05d}-{count:05d}"
    shutil.rmtree(staging, ignore_errors=True)
    # The actors hold one CPU each; reading and writing parquet are light next to the search and take no logical
    # CPU, so they still run when --workers actors hold every CPU of the cluster (otherwise the job waits forever).
    dataset = ray.data.read_parquet(files, columns=columns, num_cpus=0)
    scored = dataset.map_batches(
        ScoreActor,
        fn_constructor_args=(str(work.version_dir), work.options),
        batch_size=work.batch_size,
        batch_format="pyarrow",
        # Starting with one actor leaves a CPU for Ray's file listing task (1 CPU, no knob in Ray 2.60): a pool
        # holding every CPU from the start would wait for it forever. Ray adds actors up to --workers as batches queue.
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=work.workers),
        num_cpus=1,
    )
    scored.write_parquet(str(staging), ray_remote_args={"num_cpus": 0})
    for number, written in enumerate(sorted(staging.glob("*.parquet"))):
        os.replace(written, out / f"part-r{first:05d}-{count:05d}-{number:05d}.parquet")
    (out / _marker(first, count)).touch()
    shutil.rmtree(staging, ignore_errors=True)
