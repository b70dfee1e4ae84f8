"""The OUT dataset: part files written atomically, `_manifest.json` (what was asked, of which index version), and
`_rejected.parquet`. Readers of the dataset (pyarrow, Spark, Ray) skip names starting with "_" or ".", so the
manifest, the rejected rows and unfinished temporary files are never read as results."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"
REJECTED = "_rejected.parquet"
FORMAT = "recsys-score/1"
PART_GLOB = "part-*.parquet"


class Mismatch(Exception):
    """OUT holds results of another index version or other options (or something else): refuse to mix."""


def write_atomically(path: Path, table: pa.Table) -> None:
    """Write to a temporary name beside the target, fsync, then rename: a killed job leaves no half part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class OutputDataset:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest_path = path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise Mismatch(f"{self.manifest_path}: unreadable ({exc}); delete OUT or choose another --out") from exc
        return data

    def prepare(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Check that OUT is new, or holds a run of the same identity (index version, options, input); start or
        resume it. Returns the manifest."""
        manifest = self.read_manifest()
        if manifest is None:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise Mismatch(
                    f"{self.path}: exists and is not a recsys-score output (no {MANIFEST}); choose another --out"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            manifest = {"format": FORMAT, **identity, "status": "running", "started_at": time.time(), "runs": 0}
        else:
            for key, value in identity.items():
                if manifest.get(key) != value:
                    before, now = json.dumps(manifest.get(key), sort_keys=True), json.dumps(value, sort_keys=True)
                    raise Mismatch(
                        f"{self.path} holds results for a different {key}: {before}; this run: {now}. "
                        "Refusing to mix: delete OUT or choose another --out"
                    )
        for stale in self.path.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
        manifest["runs"] = int(manifest.get("runs", 0)) + 1
        manifest["status"] = "running"
        self.save(manifest)
        return manifest

    def save(self, manifest: dict[str, Any]) -> None:
        _write_json(self.manifest_path, manifest)

    def finished_parts(self) -> set[str]:
        return {path.name for path in self.path.glob(PART_GLOB)}

    def write_rejected(self, table: pa.Table) -> None:
        write_atomically(self.path / REJECTED, table)
