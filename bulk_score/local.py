"""`--engine local`: a process pool on one machine. Each process maps the index once (the page cache holds one copy
for all of them) and writes the parts it scores; the parent only reads chunks and keeps at most two per process in
flight, so memory is bounded by the batch size, not by the number of users.

Each process searches with one thread (OpenMP and BLAS pinned to 1 before it starts: the processes are the
parallelism) and writes its parts from background threads, so the disk's fsync overlaps the next chunks' search (on
a shared disk one fsync took up to 100 ms, longer than scoring a chunk); at most WRITES_IN_FLIGHT parts per process
wait to be written, and the job ends only once every process has written its last part (`_drain`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from multiprocessing.synchronize import Barrier
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bulk_score.output import write_atomically
from bulk_score.progress import Progress
from bulk_score.scoring import ScoreOptions, Work, score_chunk
from bulk_score.users import Chunk
from index_format.searcher import Searcher

IN_FLIGHT_PER_WORKER = 2
# Thread counts a spawned worker must start with: faiss's OpenMP and the BLAS of faiss and numpy read them once, at
# load, so they are set in the environment the workers inherit (unless the caller set them).
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
WARM_USERS = 64
WRITES_IN_FLIGHT = 4  # parts per process scored and not yet written (each holds batch_size × k results)
WRITE_THREADS = 2  # concurrent fsyncs share the file system's journal commits


class _Worker:
    """The index, options and part writer of one pool process, set once by `_open` (the pool's initializer)."""

    def __init__(self, version_dir: str, options: ScoreOptions, out: str, barrier: Barrier) -> None:
        self.searcher = Searcher.open(version_dir, verify=False)
        self.options = options
        self.out = Path(out)
        self.barrier = barrier
        self.writer = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="part-writer")
        self.writing: list[Future[None]] = []
        self.warm()

    def warm(self) -> None:
        """One small chunk through the whole path (search, output table, parquet encoding) so that first-call costs
        (lazy imports, allocations) count as start-up, not as scoring."""
        reader = self.searcher.reader
        source = reader.vectors[:WARM_USERS] if reader.vectors is not None else np.ones((WARM_USERS, reader.dim))
        vectors = np.ascontiguousarray(source, dtype=np.float32)
        values = pa.array(vectors.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, vectors.size + 1, reader.dim, dtype=np.int32))
        chunk = Chunk(
            "", pa.array([f"warm-{i}" for i in range(len(vectors))]), pa.ListArray.from_arrays(offsets, values), None
        )
        pq.write_table(score_chunk(self.searcher, self.options, chunk), pa.BufferOutputStream())

    def score(self, chunk: Chunk) -> int:
        table = score_chunk(self.searcher, self.options, chunk)
        self.drain(WRITES_IN_FLIGHT - 1)  # a write's error is raised here, by the next part's task
        self.writing.append(self.writer.submit(write_atomically, self.out / chunk.part, table))
        return len(chunk)

    def drain(self, keep: int = 0) -> None:
        """Wait until at most `keep` parts are still being written (oldest first)."""
        while len(self.writing) > keep:
            self.writing.pop(0).result()


_worker: _Worker | None = None


def _open(version_dir: str, options: ScoreOptions, out: str, barrier: Barrier) -> None:
    global _worker
    faiss.omp_set_num_threads(1)  # one search thread per process: the processes are the parallelism
    _worker = _Worker(version_dir, options, out, barrier)


def _ready() -> None:
    """Returns once every process has mapped the index: each blocks here until all have arrived, so each process
    takes exactly one of these tasks."""
    assert _worker is not None, "worker not initialised"
    _worker.barrier.wait(timeout=600)


def _drain() -> None:
    """Waits for this process's last part to be written; then, like `_ready`, for every other process."""
    assert _worker is not None, "worker not initialised"
    _worker.drain()
    _worker.barrier.wait(timeout=600)


def _score_part(chunk: Chunk) -> int:
    assert _worker is not None, "worker not initialised"
    return _worker.score(chunk)


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Children spawned inside inherit one OpenMP/BLAS thread (variables the caller set are kept)."""
    added = [name for name in SINGLE_THREAD_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def run_local(work: Work, progress: Progress) -> None:
    source, out, options, workers = work.source, work.out, work.options, work.workers
    finished = out.finished_parts()
    # Spawned, not forked: the parent has pyarrow's thread pools running, and a forked child would inherit them.
    context = multiprocessing.get_context("spawn")
    initargs = (str(work.version_dir), options, str(out.path), context.Barrier(workers))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_open, initargs=initargs) as pool:
        pending: set[Future[int]] = set()
        try:
            with _single_threaded_children():  # every process is spawned by the first submit
                ready = [pool.submit(_ready) for _ in range(workers)]
            for future in ready:
                future.result()
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
            for future in [pool.submit(_drain) for _ in range(workers)]:
                future.result()
            progress.end_scoring()  # every part written; stopping the processes is reported apart
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
