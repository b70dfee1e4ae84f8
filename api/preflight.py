"""The index check `recsys-serve` runs before it starts serving.

It checks ROOT/current once before any worker starts (a missing or corrupt index must be a clear log line and exit
1, not N workers failing). With several workers the check runs in a spawned child: in the supervisor it would import
faiss and numpy, which then hold ~18 MiB for the server's whole life without ever searching (measured with
/proc/PID/smaps_rollup: supervisor PSS 37.8 MiB with the check in-process, 19.7 MiB without), and a child that
crashes while reading the index becomes a FormatError instead of taking the supervisor down. With one worker the
process that checks is the one that serves, so the check runs in-process (a child would also start multiprocessing's
resource tracker: +7 MiB).
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
            return pool.submit(check_index_here, root, verify).result()
        except BrokenProcessPool:
            raise FormatError(f"{root}: the process checking the index died (see the log above)") from None


def check_index_here(root: Path, verify: bool) -> str:
    """api.index_state.check_index(root, verify), imported only now (faiss and numpy read their thread settings)."""
    from api.index_state import check_index

    return check_index(root, verify)
