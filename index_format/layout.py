"""File names, the manifest and checksums of an index version directory."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
METRIC = "inner_product"

MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"  # row -> external id (int64, or utf-8 bytes 'S<w>')
IDS_SORTED_FILE = "ids_sorted.npy"  # external ids sorted, for id -> row lookups without a dict per worker
IDS_SORTED_ROWS_FILE = "ids_sorted_rows.npy"  # row of each entry of ids_sorted
NORMS_FILE = "norms.npy"  # float32 L2 norm per row; rows are stored in descending norm order
# (N, d) float32 raw vectors in row order, for kinds whose index file keeps none in row order (IVF lists): mapped,
# its pages are touched only by exact and filtered-exact requests.
RAW_VECTORS_FILE = "vectors.npy"
CURRENT_LINK = "current"
TMP_PREFIX = ".tmp-"


def metadata_codes_file(field_name: str) -> str:
    """int32 code per row (-1 = missing) for one categorical metadata field."""
    return f"meta_{field_name}.npy"


class FormatError(Exception):
    """The index directory is missing, corrupt or of an incompatible format."""


@dataclass
class SweepPoint:
    params: dict[str, int]
    recall_tune: float
    recall_heldout: float
    qps_single: float


@dataclass
class Manifest:
    format_version: int
    version: str
    kind: str
    factory: str
    dim: int
    count: int
    metric: str
    id_type: str  # "int" or "str"
    default_params: dict[str, int]
    exact_method: str  # "norm_scan" (pruned scan of norm-sorted rows), "faiss_flat" or "full_probe" (old IVF builds)
    k: int
    target_recall: float
    recall_at_k: float  # held-out recall@k of default_params
    sweep: list[SweepPoint]
    tuning: dict[str, Any]
    metadata: dict[str, list[str]]  # field -> category names (code i is names[i])
    build_seconds: float
    built_at: str
    faiss_version: str
    source: dict[str, str]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"sha256", "bytes"}
    notes: list[str] = field(default_factory=list)
    delta: dict[str, Any] = field(default_factory=dict)  # index_format/delta.py: {} for a full build

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        if raw.get("format_version") != FORMAT_VERSION:
            raise FormatError(
                f"index format version {raw.get('format_version')!r} is not supported "
                f"(this build reads {FORMAT_VERSION})"
            )
        try:
            raw = dict(raw)
            raw["sweep"] = [SweepPoint(**p) for p in raw["sweep"]]
            return cls(**raw)
        except (TypeError, KeyError) as exc:
            raise FormatError(f"manifest.json does not match format {FORMAT_VERSION}: {exc}") from exc


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FormatError(f"{path}: no manifest.json (not an index version directory)") from exc
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(raw, dict):
        raise FormatError(f"{path}: manifest is not a JSON object")
    return Manifest.from_dict(raw)


def verify_checksums(version_dir: Path, manifest: Manifest) -> None:
    """Raise FormatError unless every file listed in the manifest has its recorded size and sha256.

    Faiss has no checksum of its own: flipped bytes in Flat/IVF files load fine and give wrong answers.
    """
    if not manifest.files:
        raise FormatError(f"{version_dir}: manifest lists no files")
    for name, expected in sorted(manifest.files.items()):
        path = version_dir / name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise FormatError(f"{path}: missing ({exc.strerror})") from exc
        if size != expected["bytes"]:
            raise FormatError(f"{path}: size {size} bytes, manifest says {expected['bytes']}")
        actual = sha256_of(path)
        if actual != expected["sha256"]:
            raise FormatError(f"{path}: sha256 {actual[:16]}… does not match manifest {expected['sha256'][:16]}…")


def resolve_current(root: Path) -> Path:
    """The version directory that ``ROOT/current`` points at (resolved once, so a later swap cannot mix versions)."""
    link = root / CURRENT_LINK
    if not os.path.lexists(link):
        raise FormatError(
            f"{root}: no '{CURRENT_LINK}' link: build an index with `index-builder build ... --out {root}`"
        )
    target = link.resolve()
    if not target.is_dir():
        raise FormatError(f"{link} points at {target}, which is not a directory")
    return target


def list_versions(root: Path) -> list[Path]:
    """Published version directories, oldest first (version names sort by build time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
