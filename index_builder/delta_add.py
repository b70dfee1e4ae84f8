"""`index-builder add ROOT NEW_ITEMS`: make new (or changed) products searchable without a full build.

Publishes a new version made of the current version's files, hard-linked (copied where links are impossible; never
modified), and a small exact delta segment (index_format/delta.py) holding the added products in descending-norm
order. An added id that the current version already holds replaces it: its main row is left out of every search, and
an id already in an earlier delta is replaced there. Services pick the version up like any build (ROOT/current, hot
swap). The delta is limited to `--max-delta-fraction` of the catalogue (default 5%): beyond it, `add` refuses and
recommends a full build, which (from an input including the added products) publishes a version without a delta.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index_builder.embeddings import Embeddings, InputError
from index_builder.inputs import load_embeddings
from index_builder.publish import make_staging_dir, new_version_name, publish
from index_format import delta as delta_format
from index_format import layout
from index_format.delta import DeltaSegment
from index_format.reader import IndexReader

F32 = npt.NDArray[np.float32]


def add_parser(sub: Any) -> None:
    a = sub.add_parser("add", help="publish the current version plus new products (a small exact delta segment)")
    a.add_argument("root", type=Path, help="index root (ROOT/current is the version added to)")
    a.add_argument("input", type=Path, help="new products: .npy, .parquet or .jsonl, as for build")
    a.add_argument("--ids", type=Path, help="ids for a .npy input: .npy array or a text file with one id per line")
    a.add_argument("--id-field", default="id", help="id column / key (parquet, jsonl)")
    a.add_argument("--vector-field", default="vector", help="vector column / key (parquet, jsonl)")
    a.add_argument("--metadata", action="append", help="metadata column to keep (repeatable; default all)")
    a.add_argument(
        "--max-delta-fraction",
        type=float,
        default=delta_format.MAX_FRACTION,
        help="largest delta as a share of the catalogue (default 0.05); beyond it, rebuild",
    )
    a.add_argument("--keep", type=int, help="keep at most N versions (never deletes the current one)")


@dataclasses.dataclass
class Rows:
    """The delta's products: ids, vectors and metadata values, in input order (sorted by norm when written)."""

    ids: list[Any]
    vectors: F32
    metadata: dict[str, list[str | None]]


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.max_delta_fraction <= 1.0:
        raise ValueError(f"--max-delta-fraction must be in (0, 1], got {args.max_delta_fraction}")
    current = layout.resolve_current(args.root)
    reader = IndexReader.open(current, verify=True)
    manifest = reader.manifest
    added = load_embeddings(
        args.input,
        ids_path=args.ids,
        id_field=args.id_field,
        vector_field=args.vector_field,
        metadata_fields=args.metadata,
    )
    _check_compatible(added, manifest)
    rows = _combined(DeltaSegment.open(current, manifest), manifest, added)
    limit = int(args.max_delta_fraction * manifest.count)
    if len(rows.ids) > limit:
        raise ValueError(
            f"the delta would hold {len(rows.ids)} products, over {args.max_delta_fraction:g} of the "
            f"{manifest.count}-product catalogue ({limit}): run a full `index-builder build` with every product"
        )
    replaced = reader.rows_of_ids(rows.ids)
    replaced = np.unique(replaced[replaced >= 0])
    version = new_version_name()
    staging = make_staging_dir(args.root, version)
    try:
        _link_main_files(current, staging)
        names = _write_delta(staging, rows, manifest, replaced)
        files = {name: entry for name, entry in manifest.files.items() if not delta_format.is_delta_file(name)}
        for path in sorted(staging.glob("delta_*.npy")):
            files[path.name] = {"sha256": layout.sha256_of(path), "bytes": path.stat().st_size}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        info = {
            "count": len(rows.ids),
            "replaced": int(replaced.size),
            "added_at": now,
            "base_version": manifest.delta.get("base_version", manifest.version),
            "last_input": args.input.name,
        }
        note = f"delta: {len(added)} products added at {now} from {args.input.name} ({len(rows.ids)} in the delta)"
        new_manifest = dataclasses.replace(
            manifest, version=version, files=files, metadata=names, delta=info, notes=[*manifest.notes, note]
        )
        (staging / layout.MANIFEST).write_text(new_manifest.to_json())
        final = publish(args.root, staging, version, args.keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(
        f"version      {version}  ({final})\n"
        f"delta        {len(rows.ids)} products ({len(added)} from {args.input.name}), {replaced.size} replace "
        f"products of the full build {info['base_version']}; limit {limit}"
    )
    return 0


def _check_compatible(added: Embeddings, manifest: layout.Manifest) -> None:
    if added.dim != manifest.dim:
        raise InputError(f"{added.source_name}: vectors of dimension {added.dim}, the index has {manifest.dim}")
    if added.id_type != manifest.id_type:
        raise InputError(f"{added.source_name}: {added.id_type} ids, the index has {manifest.id_type} ids")
    unknown = sorted(set(added.metadata) - set(manifest.metadata))
    if unknown:
        raise InputError(
            f"{added.source_name}: metadata field(s) {', '.join(unknown)} are not in the index "
            f"(it has: {', '.join(sorted(manifest.metadata)) or 'none'}); pass --metadata, or rebuild"
        )


def _combined(previous: DeltaSegment | None, manifest: layout.Manifest, added: Embeddings) -> Rows:
    """The earlier delta's products that the new input does not replace, then the new ones."""
    new_ids = [str(value) if added.id_type == "str" else int(value) for value in added.ids]
    fields = sorted(manifest.metadata)
    new_meta = {name: list(added.metadata.get(name, [None] * len(added))) for name in fields}
    if previous is None or previous.count == 0:
        return Rows(new_ids, added.vectors, new_meta)
    old_ids = previous.external_ids(np.arange(previous.count, dtype=np.int64))
    replaced = set(new_ids)
    kept = np.array([i for i, value in enumerate(old_ids) if value not in replaced], dtype=np.int64)
    metadata = {}
    for name in fields:
        names = manifest.metadata[name]
        codes = np.asarray(previous.metadata_codes[name])[kept].tolist()
        metadata[name] = [names[c] if c >= 0 else None for c in codes] + new_meta[name]
    vectors = np.concatenate([np.asarray(previous.vectors)[kept], added.vectors]).astype(np.float32)
    return Rows([old_ids[i] for i in kept.tolist()] + new_ids, vectors, metadata)


def _link_main_files(current: Path, staging: Path) -> None:
    """Every file of the current version except its manifest and delta: hard links, copies where impossible."""
    for path in sorted(current.iterdir()):
        if not path.is_file() or path.name == layout.MANIFEST or delta_format.is_delta_file(path.name):
            continue
        try:
            os.link(path, staging / path.name)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copy2(path, staging / path.name)


def _write_delta(
    staging: Path, rows: Rows, manifest: layout.Manifest, replaced: npt.NDArray[np.int64]
) -> dict[str, list[str]]:
    """The delta files in descending-norm order; returns the metadata names (new values appended, so the main
    index's codes keep their meaning)."""
    norms = np.linalg.norm(rows.vectors, axis=1).astype(np.float32)
    order = np.argsort(-norms, kind="stable")
    np.save(staging / delta_format.VECTORS_FILE, np.ascontiguousarray(rows.vectors[order], dtype=np.float32))
    np.save(staging / delta_format.NORMS_FILE, norms[order])
    ordered_ids = [rows.ids[i] for i in order.tolist()]
    if manifest.id_type == "str":
        encoded = [value.encode("utf-8") for value in ordered_ids]
        width = max(1, max((len(b) for b in encoded), default=1))
        np.save(staging / delta_format.IDS_FILE, np.array(encoded, dtype=f"S{width}"))
    else:
        np.save(staging / delta_format.IDS_FILE, np.array(ordered_ids, dtype=np.int64))
    np.save(staging / delta_format.REPLACED_FILE, replaced.astype(np.int64))
    names_by_field: dict[str, list[str]] = {}
    for name in sorted(manifest.metadata):
        names = list(manifest.metadata[name])
        values = rows.metadata[name]
        names += sorted({v for v in values if v is not None} - set(names))
        code_of = {value: code for code, value in enumerate(names)}
        codes = np.array([code_of[values[i]] if values[i] is not None else -1 for i in order.tolist()])
        np.save(staging / delta_format.metadata_codes_file(name), codes.astype(np.int32))
        names_by_field[name] = names
    return names_by_field
