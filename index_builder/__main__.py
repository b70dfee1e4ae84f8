"""index-builder: build | inspect | verify | hide | restore | add.

Exit codes: 0 ok, 1 verification failed, 2 bad input or usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index_builder import availability_cli, delta_add, kinds
from index_builder.build import DEFAULT_TUNE_BUDGET, TUNING_QUERIES_FILE, BuildOptions, build
from index_builder.embeddings import InputError
from index_builder.inputs import load_embeddings
from index_builder.progress import Progress
from index_builder.publish import PublishError
from index_builder.query_sets import load_query_sets
from index_builder.tuning import tie_aware_recall
from index_builder.verify_queries import verify_on_queries
from index_format import layout
from index_format.reader import IndexReader


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="index-builder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build, tune and publish a new index version")
    b.add_argument("input", type=Path, help=".npy matrix, .parquet or .jsonl embeddings")
    b.add_argument("--out", type=Path, required=True, help="index root: versions go to ROOT/<version>, ROOT/current")
    b.add_argument("--ids", type=Path, help="ids for a .npy input: .npy array or a text file with one id per line")
    b.add_argument("--id-field", default="id", help="id column / key (parquet, jsonl)")
    b.add_argument("--vector-field", default="vector", help="vector column / key (parquet, jsonl)")
    b.add_argument("--metadata", action="append", help="categorical metadata column to keep (repeatable; default all)")
    b.add_argument(
        "--queries",
        type=Path,
        action="append",
        help="sample user vectors (.npy or .jsonl) to tune and measure recall; repeat it for several samples: each "
        "then reaches the target, and recall is reported per sample",
    )
    b.add_argument("--kind", default="auto", choices=kinds.KINDS)
    b.add_argument("--factory", help="faiss index_factory string, with --kind factory")
    b.add_argument("--k", type=int, default=10, help="k of the recall@k to tune for (default 10)")
    b.add_argument("--target-recall", type=float, default=0.95)
    b.add_argument("--keep", type=int, help="keep at most N versions (never deletes the current one)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--kinds",
        default=",".join(BuildOptions.kinds_for_auto),
        help="comma-separated candidates of --kind auto (default %(default)s)",
    )
    b.add_argument(
        "--tune-budget",
        type=float,
        default=DEFAULT_TUNE_BUDGET,
        metavar="SECONDS",
        help="time auto may spend building, tuning and comparing candidates (default %(default)s); candidates that "
        "cannot fit are skipped with a note in the manifest",
    )
    b.add_argument(
        "--max-tune-queries",
        type=int,
        default=BuildOptions.max_tune_queries,
        help="at most this many tuning and as many held-out queries (default %(default)s)",
    )
    b.add_argument(
        "--train-sample", type=int, metavar="ROWS", help="rows to train IVF/PQ on (default 64 per list, ≥ 20000 for PQ)"
    )
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")

    i = sub.add_parser("inspect", help="print the current version's manifest summary")
    i.add_argument("root", type=Path)
    i.add_argument("--json", action="store_true", help="print the whole manifest")

    v = sub.add_parser("verify", help="check every checksum and re-measure recall of the current version")
    v.add_argument("root", type=Path)
    v.add_argument("--tolerance", type=float, default=0.02, help="allowed drop of recall vs the manifest")
    v.add_argument("--queries", type=Path, help="measure recall and QPS on these queries (.npy/.jsonl) instead")
    v.add_argument("--k", type=int, help="k of recall@k with --queries (default: the manifest's)")
    availability_cli.add_parsers(sub)
    delta_add.add_parser(sub)
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"index-builder: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command in ("hide", "restore"):
            return availability_cli.run(args)
        if args.command == "add":
            return delta_add.run(args)
        return _verify(args)
    except (InputError, PublishError, layout.FormatError) as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))


def _build(args: argparse.Namespace) -> int:
    if not 0.0 < args.target_recall <= 1.0:
        return _fail(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if args.k < 1:
        return _fail(f"--k must be ≥ 1, got {args.k}")
    if args.keep is not None and args.keep < 1:
        return _fail(f"--keep must be ≥ 1, got {args.keep}")
    if (args.kind == "factory") != bool(args.factory):
        return _fail("--factory STRING goes with --kind factory (and only with it)")
    if not args.tune_budget > 0:
        return _fail(f"--tune-budget must be > 0 seconds, got {args.tune_budget}")
    if args.max_tune_queries < 1:
        return _fail(f"--max-tune-queries must be ≥ 1, got {args.max_tune_queries}")
    if args.train_sample is not None and args.train_sample < 1:
        return _fail(f"--train-sample must be ≥ 1, got {args.train_sample}")
    candidates = tuple(name.strip() for name in args.kinds.split(",") if name.strip())
    unknown = [name for name in candidates if name not in kinds.KINDS or name in ("auto", "factory")]
    if not candidates or unknown:
        return _fail(f"--kinds takes a comma-separated list of flat, pruned, hnsw, ivf, ivfpq; got {args.kinds!r}")
    progress = Progress(quiet=args.quiet)
    embeddings = load_embeddings(
        args.input,
        ids_path=args.ids,
        id_field=args.id_field,
        vector_field=args.vector_field,
        metadata_fields=args.metadata,
        progress=progress.update,
    )
    progress.message(f"loaded {len(embeddings)} × {embeddings.dim} from {args.input}")
    queries, query_sets = load_query_sets(args.queries, embeddings.dim) if args.queries else (None, ())
    if queries is None:
        progress.message("no --queries: tuning on perturbed item vectors (manifest: queries_source=sampled-items)")
    options = BuildOptions(
        args.kind,
        args.factory,
        args.k,
        args.target_recall,
        args.keep,
        args.seed,
        max_tune_queries=args.max_tune_queries,
        kinds_for_auto=candidates,
        tune_budget=args.tune_budget,
        train_sample=args.train_sample,
        query_sets=query_sets,
    )
    final, manifest = build(embeddings, args.out, queries, options, progress)
    print(_summary(manifest, final))
    return 0


def _summary(manifest: layout.Manifest, version_dir: Path) -> str:
    size = sum(entry["bytes"] for entry in manifest.files.values())
    lines = [
        f"version      {manifest.version}  ({version_dir})",
        f"kind         {manifest.kind}  factory {manifest.factory}  exact search: {manifest.exact_method}",
        f"items        {manifest.count} × {manifest.dim}  ids: {manifest.id_type}  metric: {manifest.metric}",
        f"params       {manifest.default_params or '(exact)'}",
        f"recall@{manifest.k}    {manifest.recall_at_k:.4f} held-out (target {manifest.target_recall}, "
        f"queries: {manifest.tuning.get('queries_source')})",
        f"metadata     {', '.join(f'{k} ({len(v)} values)' for k, v in manifest.metadata.items()) or '-'}",
        f"built        {manifest.built_at} in {manifest.build_seconds:.1f}s, faiss {manifest.faiss_version}, "
        f"{size / 2**20:.1f} MiB on disk",
        f"source       {manifest.source.get('name')} sha256 {manifest.source.get('sha256', '')[:16]}",
    ]
    lines += [
        f"query set    {s['name']}: recall@{manifest.k} {s['recall_heldout']:.4f} held-out ({s['n_heldout']} queries)"
        for s in manifest.tuning.get("query_sets", [])
    ]
    lines += [f"note         {note}" for note in manifest.notes]
    candidates = manifest.tuning.get("candidates", [])
    if len(candidates) > 1:
        lines.append(
            f"candidates   {'kind':<8}{'build s':>9}{'MiB':>9}  {'recall@' + str(manifest.k):>10}{'QPS':>9}  params"
        )
        for c in candidates:
            recall = f"{c['recall_heldout']:.4f}" if c["recall_heldout"] is not None else "below"
            qps = f"{c['qps_single']:.0f}" if c["qps_single"] is not None else "-"
            lines.append(
                f"             {c['kind']:<8}{c['build_seconds']:>9.1f}{c['bytes'] / 2**20:>9.1f}  {recall:>10}{qps:>9}"
                f"  {c['params'] if c['params'] else '(exact)' if c['params'] == {} else '-'}"
            )
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    version_dir = layout.resolve_current(args.root)
    manifest = layout.read_manifest(version_dir)
    print(manifest.to_json() if args.json else _summary(manifest, version_dir))
    return 0


def _verify(args: argparse.Namespace) -> int:
    version_dir = layout.resolve_current(args.root)
    try:
        reader = IndexReader.open(version_dir, verify=True)
    except layout.FormatError as exc:
        return _fail(f"verification failed: {exc}", code=1)
    manifest = reader.manifest
    print(f"checksums    ok ({len(manifest.files)} files)")
    if args.queries is not None:
        print("\n".join(verify_on_queries(reader, args.queries, args.k)))
        return 0
    if args.k is not None:
        return _fail("--k goes with --queries")
    queries = np.load(version_dir / TUNING_QUERIES_FILE)
    heldout = queries[: manifest.tuning["n_heldout"]]
    k = manifest.k
    truth = reader.search(heldout, k, exact=True)
    found = reader.search(heldout, k).rows
    if reader.vectors is not None:
        recall = tie_aware_recall(reader.vectors, heldout, found, truth.scores, k)
    else:
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth.rows, strict=True)]
        recall = sum(hits) / (k * heldout.shape[0])
    ok = recall >= manifest.recall_at_k - args.tolerance
    print(f"recall@{k}    {recall:.4f} measured now vs {manifest.recall_at_k:.4f} in manifest: {'ok' if ok else 'LOW'}")
    return 0 if ok else _fail("recall is below the manifest's", code=1)


if __name__ == "__main__":
    sys.exit(main())
