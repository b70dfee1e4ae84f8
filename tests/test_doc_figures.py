"""One source for figures: a number quoted in a README is written as a link to the committed results JSON and the
key it comes from, `[18.7k](benchmarks/results/ann_gowalla_als.json "summary.rows.3.qps_single")`, and must match
that value at the precision shown (convention: benchmarks/README.md, "Figures in the READMEs")."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package
from benchmarks.refresh_figures import FIGURE, READMES, formatted, lookup, refresh  # noqa: E402

NUMBER = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)\s*([kM]?)")
SCALE = {"": 1.0, "k": 1e3, "M": 1e6}


def figures() -> list[tuple[str, str, Path, str]]:
    """(where, shown text, results file, key) for every figure link in the READMEs."""
    found = []
    for name in READMES:
        readme = REPO / name
        fenced = False
        for line_number, line in enumerate(readme.read_text().splitlines(), start=1):
            fenced ^= line.startswith("```")
            if fenced:  # code blocks show the syntax; they quote nothing
                continue
            for shown, target, key in FIGURE.findall(line):
                found.append((f"{name}:{line_number}", shown, (readme.parent / target).resolve(), key))
    return found


def matches(shown: str, value: float) -> bool:
    """`shown` is `value` at the precision shown: "18.7k" is 18,650 ≤ v < 18,750; "4.0×" is 3.95 ≤ v < 4.05."""
    found = NUMBER.search(shown)
    assert found, f"no number in {shown!r}"
    digits, suffix = found.groups()
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    scale = SCALE[suffix]
    number = float(digits.replace(",", ""))
    return math.isclose(number, value / scale, abs_tol=0.5 * 10**-decimals + 1e-9)


CASES = figures()


def test_the_readmes_quote_figures_this_way() -> None:
    assert len(CASES) >= 20, "the headline figures of README.md and benchmarks/README.md are links to results"
    assert {where.split(":")[0] for where, *_ in CASES} >= {"README.md", "benchmarks/README.md"}


@pytest.mark.parametrize(("where", "shown", "path", "key"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_each_quoted_figure_matches_its_results_file(where: str, shown: str, path: Path, key: str) -> None:
    assert path.is_file(), f"{where}: {path} does not exist"
    assert path.is_relative_to(REPO / "benchmarks" / "results"), f"{where}: results live in benchmarks/results"
    try:
        value = lookup(json.loads(path.read_text()), key)
    except (KeyError, IndexError, ValueError) as exc:
        raise AssertionError(f"{where}: {path.name} has no {key!r} ({exc!r})") from exc
    assert isinstance(value, int | float), f"{where}: {path.name} {key} is {value!r}, not a number"
    assert matches(shown, float(value)), f"{where}: shows {shown!r}, {path.name} {key} is {value}"


def test_the_checker_catches_a_wrong_figure() -> None:
    assert matches("18.7k", 18653) and matches("4.0×", 4.01) and matches("2.0M", 2009286) and matches("0", 0)
    assert not matches("18.7k", 18753) and not matches("25.4k", 18653) and not matches("0.955", 0.9538)


def test_refresh_writes_a_new_value_as_the_old_one_was_written(tmp_path: Path) -> None:
    """benchmarks/refresh_figures.py rewrites a figure from its results file at the precision and in the form shown,
    leaves code blocks and other files' figures alone, and its output passes the check above."""
    assert formatted("16.3k", 24207.2) == "24.2k"
    assert formatted("5,292", 7991.34) == "7,991"
    assert formatted("0.79×", 0.90876) == "0.91×"
    assert formatted("805", 915.9) == "916"
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps({"runs": [{"qps": 18_650.0, "ratio": 0.912}]}))
    (results / "b.json").write_text(json.dumps({"x": 2.0}))
    text = (
        'QPS [17.0k](results/a.json "runs.0.qps"), ratio [0.79](results/a.json "runs.0.ratio"), '
        'other [1.0](results/b.json "x")\n```\n[1](results/a.json "runs.0.qps")\n```'
    )
    new, changes = refresh(text, tmp_path, {"a.json"})
    assert new.splitlines()[0] == (
        'QPS [18.6k](results/a.json "runs.0.qps"), ratio [0.91](results/a.json "runs.0.ratio"), '
        'other [1.0](results/b.json "x")'
    )
    assert new.splitlines()[2] == '[1](results/a.json "runs.0.qps")' and len(changes) == 2
    for shown, _, key in FIGURE.findall(new.splitlines()[0])[:2]:
        assert matches(shown, float(lookup(json.loads((results / "a.json").read_text()), key)))
