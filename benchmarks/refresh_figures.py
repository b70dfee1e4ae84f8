"""Rewrite the figures quoted in the READMEs from their results files, after a benchmark was re-run.

    python -m benchmarks.refresh_figures [--only http_gowalla_als_issue10.json ...] [--check]

A figure is a link `[18.7k](benchmarks/results/ann_gowalla_als.json "summary.rows.3.qps_single")` (convention:
benchmarks/README.md, "Figures in the READMEs"; checked by tests/test_doc_figures.py). Each shown number is replaced
by the linked value written the same way: same decimals, same k/M suffix, thousands separators if it had them, and
any text around the number (a "×", a unit) kept. Prose that interprets figures (ratios, "below target") is not a
figure: reread it after a refresh. --check only lists what would change (exit 1 if anything would).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
READMES = (
    "README.md",
    "api/README_API.md",
    "benchmarks/README.md",
    "benchmarks/README_http.md",
    "benchmarks/README_bulk.md",
    "deploy/README.md",
)
FIGURE = re.compile(r'\[([^\]]+)\]\(([^)\s]*results/[^)\s]+\.json) "([^"]+)"\)')
NUMBER = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)(\s*)([kM]?)")
SCALE = {"": 1.0, "k": 1e3, "M": 1e6}


def lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def formatted(shown: str, value: float) -> str:
    """`value` written as `shown` writes its number."""
    found = NUMBER.search(shown)
    if found is None:
        return shown
    digits, space, suffix = found.groups()
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    number = value / SCALE[suffix]
    text = f"{number:,.{decimals}f}" if "," in digits else f"{number:.{decimals}f}"
    return shown[: found.start()] + text + space + suffix + shown[found.end() :]


def refresh(text: str, base: Path, only: set[str]) -> tuple[str, list[str]]:
    changes: list[str] = []
    cache: dict[Path, Any] = {}

    def replace(match: re.Match[str]) -> str:
        shown, target, key = match.groups()
        path = (base / target).resolve()
        if only and path.name not in only:
            return match.group(0)
        if path not in cache:
            cache[path] = json.loads(path.read_text())
        value = lookup(cache[path], key)
        if not isinstance(value, int | float):
            return match.group(0)
        new = formatted(shown, float(value))
        if new != shown:
            changes.append(f"{path.name} {key}: {shown} -> {new}")
        return f'[{new}]({target} "{key}")'

    lines = []
    fenced = False
    for line in text.split("\n"):
        fenced ^= line.startswith("```")
        lines.append(line if fenced else FIGURE.sub(replace, line))
    return "\n".join(lines), changes


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.refresh_figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=[], help="results file names to refresh (default: all)")
    p.add_argument("--check", action="store_true", help="list what would change; exit 1 if anything would")
    args = p.parse_args(argv)
    changed = False
    for name in READMES:
        readme = REPO / name
        new, changes = refresh(readme.read_text(), readme.parent, set(args.only))
        for change in changes:
            print(f"{name}: {change}")
        if changes:
            changed = True
            if not args.check:
                readme.write_text(new)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
