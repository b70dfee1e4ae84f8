"""`make serve` on a fresh checkout installs the runtime dependencies only; the dev extras are for test and lint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run with a venv and an index root that do not exist yet (nothing is executed)."""
    variables = [f"VENV={tmp_path / 'venv'}", f"INDEX_ROOT={tmp_path / 'indexes'}"]
    done = subprocess.run(["make", "-n", "-C", str(REPO), target, *variables], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_serve_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    serve = dry_run("serve", tmp_path)
    assert "pip install --quiet -e ." in serve
    assert "[dev]" not in serve and "[bench]" not in serve
    assert "recsys-serve --index-root" in serve
    for target in ("test", "lint"):
        assert "-e '.[dev]'" in dry_run(target, tmp_path), f"make {target} needs the dev extras"
