"""`index-builder hide|restore ROOT [IDS...] [--file F]`: hide products from (or restore them to) every search of
the index under ROOT, without a rebuild. The ids go to ROOT/availability.json (index_format/availability.py);
running services apply the change within seconds, and it outlives swaps, restarts and new builds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from index_format import availability, layout


def add_parsers(sub: Any) -> None:
    for name, verb in (("hide", "hide products from"), ("restore", "restore hidden products to")):
        p = sub.add_parser(name, help=f"{verb} every search (no rebuild; services follow within seconds)")
        p.add_argument("root", type=Path, help="index root (ROOT/current is the served version)")
        p.add_argument("ids", nargs="*", help="product ids")
        p.add_argument("--file", type=Path, help="a text file with one id per line (blank lines ignored)")


def run(args: argparse.Namespace) -> int:
    """Raises ValueError (bad ids or file) or layout.FormatError (no index under ROOT); exit code 0 otherwise."""
    id_type = layout.read_manifest(layout.resolve_current(args.root)).id_type
    raw = list(args.ids)
    if args.file is not None:
        try:
            raw += [line.strip() for line in args.file.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{args.file}: cannot read the ids: {exc}") from exc
    if not raw:
        raise ValueError(f"{args.command}: give product ids, or --file with one id per line")
    ids = [_id(value, id_type) for value in raw]
    try:
        if args.command == "hide":
            state = availability.change(args.root, hide=ids)
        else:
            state = availability.change(args.root, restore=ids)
    except availability.AvailabilityError as exc:
        raise ValueError(str(exc)) from exc
    print(f"{args.command}: {len(ids)} ids; {len(state.hidden)} hidden in total (generation {state.generation})")
    return 0


def _id(value: str, id_type: str) -> int | str:
    if id_type == "str":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer id (this index has integer ids)") from None
