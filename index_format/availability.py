"""Which products are hidden, per index root: ``ROOT/availability.json``, next to the version directories.

The file outlives versions (a swap or a restart keeps it) and holds external ids, so it applies to whichever
version is served; ids that a version does not hold are kept and simply match nothing there. It is small and
versioned (a format number and a generation counted up on every change) and always replaced whole: written to a
temporary file, fsynced and renamed, so a reader sees the old or the new list, never half of one. Changes take an
exclusive lock on ``ROOT/.availability.lock`` so two writers (a CLI and an admin request) cannot lose each other's
change. Workers notice a change by the file's stat (`stat_key`), one syscall per poll.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

FILE = "availability.json"
LOCK_FILE = ".availability.lock"
FORMAT = 1
MAX_HIDDEN = 10_000_000  # ids in the file; beyond it, rebuild the index without those products

Id = int | str


class AvailabilityError(Exception):
    """The availability file is unreadable, or a change is invalid."""


@dataclass(frozen=True)
class Availability:
    generation: int
    hidden: frozenset[Id]
    updated_at: str = ""


EMPTY = Availability(0, frozenset())


def path_of(root: Path) -> Path:
    return Path(root) / FILE


def stat_key(root: Path) -> tuple[int, int, int] | None:
    """What the file looks like now (inode, size, mtime); None when there is none. A rename gives a new inode."""
    try:
        st = os.stat(path_of(root))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read(root: Path) -> Availability:
    path = path_of(root)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return EMPTY
    except (OSError, ValueError) as exc:
        raise AvailabilityError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise AvailabilityError(f"{path}: not an availability file of format {FORMAT}")
    hidden = raw.get("hidden")
    generation = raw.get("generation")
    if not isinstance(hidden, list) or not isinstance(generation, int):
        raise AvailabilityError(f"{path}: expected 'hidden' (a list of ids) and 'generation' (an integer)")
    return Availability(generation, frozenset(hidden), str(raw.get("updated_at", "")))


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root = Path(root)
    if not root.is_dir():
        raise AvailabilityError(f"{root}: no such index root")
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(root: Path, state: Availability) -> None:
    path = path_of(root)
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    ordered = sorted(state.hidden, key=lambda value: (isinstance(value, str), value))
    body = {"format": FORMAT, "generation": state.generation, "updated_at": state.updated_at, "hidden": ordered}
    with open(tmp, "w") as handle:
        json.dump(body, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def change(root: Path, hide: Sequence[Id] = (), restore: Sequence[Id] = ()) -> Availability:
    """Hide and/or restore ids (restoring an id that is not hidden, or hiding one twice, changes nothing) and
    return the new state; the generation counts up only when the set changed."""
    for value in (*hide, *restore):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise AvailabilityError(f"ids are integers or strings, got {value!r}")
    with _locked(root):
        current = read(root)
        hidden = (current.hidden | frozenset(hide)) - frozenset(restore)
        if hidden == current.hidden:
            return current
        if len(hidden) > MAX_HIDDEN:
            raise AvailabilityError(f"at most {MAX_HIDDEN} ids can be hidden; rebuild the index without them")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        state = Availability(current.generation + 1, hidden, stamp)
        _write(root, state)
        return state
