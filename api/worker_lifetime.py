"""Workers end with their supervisor: a uvicorn worker whose supervisor was SIGKILLed (OOM killer, `kill -9`) would
otherwise keep serving as an orphan nobody stops or restarts, holding the port and the index mappings."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

LOG = logging.getLogger("api.serve")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(sig: int = signal.SIGTERM) -> bool:
    """In a worker process (one started by multiprocessing): ask Linux to send `sig` when the parent dies.

    SIGTERM, so the worker shuts down as on a normal stop (requests in flight finish). The signal follows the death
    of the parent *thread* that started the worker; uvicorn's supervisor starts workers from its main thread. Returns
    False where it does not apply (no parent process: a single-worker server; or not Linux)."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        LOG.warning("prctl(PR_SET_PDEATHSIG) failed (%s): this worker will outlive its supervisor", os.strerror(errno))
        return False
    if os.getppid() != parent.pid:  # the supervisor died before the request above: nobody will signal us
        os.kill(os.getpid(), sig)
    return True
