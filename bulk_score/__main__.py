"""recsys-score USERS --index-root ROOT --out OUT [--k 10] [--exact] [--filter FIELD=V1,V2 ...]
[--engine local|ray] [--ray-address ADDR] [--workers N] [--batch-size B] [--user-ids FILE] [--skip-bad]

Exit codes: 0 done, 2 bad input or usage (one line on stderr saying what and where; nothing written for bad rows
unless --skip-bad), 1 an unexpected failure (re-running resumes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bulk_score.job import JobConfig, run_job
from bulk_score.local import default_workers
from bulk_score.output import Mismatch
from bulk_score.scoring import ScoreOptions
from bulk_score.users import BadInput
from index_format.layout import FormatError
from index_format.searcher import SearchError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _filter(text: str) -> tuple[str, list[str]]:
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"expected FIELD=V1,V2, got {text!r}")
    return name, values.split(",")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys-score", description="Top-k items for every user, into a parquet dataset.")
    p.add_argument(
        "users",
        type=Path,
        metavar="USERS",
        help="parquet file or directory (user_id, vector[, exclude]), or .npy vectors",
    )
    p.add_argument(
        "--index-root", type=Path, required=True, help="index root (ROOT/current is used) or a version directory"
    )
    p.add_argument("--out", type=Path, required=True, help="output dataset directory (re-running resumes it)")
    p.add_argument("--k", type=_positive, default=10)
    p.add_argument(
        "--exact", action="store_true", help="exact top-k (every allowed item) instead of the tuned ANN search"
    )
    p.add_argument(
        "--filter",
        type=_filter,
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="keep items whose FIELD is one of the values (repeat: AND)",
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument(
        "--workers", type=_positive, default=None, help="processes (local) or actors (ray); default: the CPUs"
    )
    p.add_argument("--batch-size", type=_positive, default=10_000, help="users per search call and per output part")
    p.add_argument("--user-ids", type=Path, help="user ids of .npy vectors (.npy array, or one id per line)")
    p.add_argument(
        "--skip-bad", action="store_true", help="score the good rows and list bad ones in OUT/_rejected.parquet"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    filters: dict[str, list[str]] = {}
    for name, values in args.filter:
        filters.setdefault(name, []).extend(values)
    config = JobConfig(
        users=args.users,
        index_root=args.index_root,
        out=args.out,
        options=ScoreOptions(k=args.k, exact=args.exact, filter=filters),
        user_ids=args.user_ids,
        engine=args.engine,
        ray_address=args.ray_address,
        workers=args.workers or default_workers(),
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
    )
    try:
        manifest = run_job(config)
    except (BadInput, SearchError, Mismatch, FormatError) as exc:
        print(f"recsys-score: {exc}", file=sys.stderr)
        return 2
    counts, timings = manifest["counts"], manifest["timings"]
    print(
        f"recsys-score: {counts['scored']:,} users scored into {counts['parts']} parts in {args.out} "
        f"({counts['rejected']} rejected; this run {timings['users_per_second']:,.0f} users/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
