"""Atomic, versioned publishing: ROOT/.tmp-<version>-<pid>/ → fsync → rename to ROOT/<version> → repoint
ROOT/current with a symlink swap. A build that fails or is killed leaves `current` and every published file as
they were: published files are never rewritten (a live mmap of a truncated file dies with SIGBUS)."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from pathlib import Path

from index_builder.memory import remove_tree
from index_format import layout


class PublishError(Exception):
    """The output root cannot be written."""


def new_version_name() -> str:
    """Sortable by build time, unique across concurrent builds."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
    return f"{stamp}-{secrets.token_hex(3)}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def remove_stale_staging(root: Path) -> list[tuple[Path, int]]:
    """Delete staging directories left by builds that were killed (their pid is gone); returns each with the bytes
    it held."""
    removed = []
    for path in root.glob(layout.TMP_PREFIX + "*"):
        pid_text = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
            removed.append((path, remove_tree(path)))
    return removed


def make_staging_dir(root: Path, version: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        staging = root / f"{layout.TMP_PREFIX}{version}-{os.getpid()}"
        staging.mkdir()
        probe = staging / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise PublishError(f"cannot write to output root {root}: {exc.strerror or exc}") from exc
    return staging


def publish(root: Path, staging: Path, version: str, keep: int | None) -> Path:
    """Move a complete staging directory into place and make it current. Returns the version directory."""
    for path in staging.iterdir():
        _fsync_path(path)
    _fsync_path(staging)
    final = root / version
    os.rename(staging, final)
    _fsync_path(root)
    link_tmp = root / f"{layout.TMP_PREFIX}link-{os.getpid()}"
    if os.path.lexists(link_tmp):
        link_tmp.unlink()
    os.symlink(version, link_tmp)
    os.replace(link_tmp, root / layout.CURRENT_LINK)
    _fsync_path(root)
    if keep is not None:
        prune(root, keep)
    return final


def prune(root: Path, keep: int) -> list[Path]:
    """Delete the oldest versions beyond `keep`, never the current one. Processes that still map an old
    version keep their pages: unlinking a file does not invalidate a mapping."""
    current = layout.resolve_current(root).name if os.path.lexists(root / layout.CURRENT_LINK) else None
    versions = [p for p in layout.list_versions(root) if p.name != current]
    allowed_others = max(0, keep - (1 if current else 0))
    doomed = versions[: max(0, len(versions) - allowed_others)]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
