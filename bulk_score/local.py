"""`--engine local`: a process pool on one machine. Each process maps the index once (the page cache holds one copy
for all of them) and writes the parts it scores; the parent only reads chunks and keeps at most two per process in
flight, so memory is bounded by the batch size, not by the number of users."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.synchronize import Barrier
from pathlib import Path

import faiss

from bulk_score.output import write_atomically
from bulk_score.progress import Progress
from bulk_score.scoring import ScoreOptions, Work, score_chunk
from bulk_score.users import Chunk
from index_format.searcher import Searcher

IN_FLIGHT_PER_WORKER = 2

# The index and options of this worker process, set once by `_open` (the pool's initializer).
_worker: tuple[Searcher, ScoreOptions, Path] | None = None
_started: Barrier | None = None


def _open(version_dir: str, options: ScoreOptions, out: str, started: Barrier) -> None:
    global _worker, _started
    faiss.omp_set_num_threads(1)  # one search thread per process: the processes are the parallelism
    _worker = (Searcher.open(version_dir, verify=False), options, Path(out))
    _started = started


def _ready() -> None:
    """Returns once every process has mapped the index: each blocks here until all have arrived, so each process
    takes exactly one of these tasks."""
    assert _started is not None
    _started.wait(timeout=600)


def _score_part(chunk: Chunk) -> int:
    assert _worker is not None, "worker not initialised"
    searcher, options, out = _worker
    table = score_chunk(searcher, options, chunk)
    write_atomically(out / chunk.part, table)
    return len(chunk)


def run_local(work: Work, progress: Progress) -> None:
    source, out, options, workers = work.source, work.out, work.options, work.workers
    finished = out.finished_parts()
    # Spawned, not forked: the parent has pyarrow's thread pools running, and a forked child would inherit them.
    context = multiprocessing.get_context("spawn")
    initargs = (str(work.version_dir), options, str(out.path), context.Barrier(workers))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_open, initargs=initargs) as pool:
        pending: set[Future[int]] = set()
        try:
            for ready in [pool.submit(_ready) for _ in range(workers)]:
                ready.result()
            progress.start_scoring()  # users/s counts from here: start-up is reported apart
            for chunk in source.chunks(work.batch_size):
                if chunk.part in finished:
                    progress.advance(len(chunk), skipped=True)
                    continue
                while len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                    pending = _collect(pending, progress)
                pending.add(pool.submit(_score_part, chunk))
            while pending:
                pending = _collect(pending, progress)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _collect(pending: set[Future[int]], progress: Progress) -> set[Future[int]]:
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        progress.advance(future.result())
    return rest


def default_workers() -> int:
    return len(os.sched_getaffinity(0))
