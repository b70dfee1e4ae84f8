"""The supervisor's index check, run in a spawned child process.

`recsys-serve` checks ROOT/current once before it starts any worker (a missing or corrupt index must be a clear log
line and exit 1, not N workers failing). Checking in-process would import faiss and numpy into the supervisor, which
then holds ~25 MiB of anonymous memory for the server's whole life without ever searching (measured with
/proc/PID/smaps_rollup: supervisor 33 MiB anonymous with the check in-process, ~11 MiB without). A child that
crashes while reading the index also becomes a FormatError instead of taking the supervisor down.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from index_format.layout import FormatError


def check_index_isolated(root: Path, verify: bool) -> str:
    """api.index_state.check_index(root, verify) in a spawned process: its one-line summary, or FormatError."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_check, root, verify).result()
        except BrokenProcessPool:
            raise FormatError(f"{root}: the process checking the index died (see the log above)") from None


def _check(root: Path, verify: bool) -> str:
    from api.index_state import check_index  # imports faiss and numpy: only in the child

    return check_index(root, verify)
