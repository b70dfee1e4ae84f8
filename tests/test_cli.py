"""index-builder CLI: build/inspect/verify, exit codes, and a SIGKILL mid-build leaving `current` intact."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from catalogue import catalogue, user_queries

from index_builder.__main__ import main
from index_format import layout
from index_format.reader import IndexReader


@pytest.fixture(scope="module")
def npy_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("input")
    items, centroids, _ = catalogue(3000, 16, seed=11)
    np.save(folder / "items.npy", items)
    (folder / "ids.txt").write_text("".join(f"sku-{i}\n" for i in range(3000)))
    np.save(folder / "queries.npy", user_queries(centroids, 400, seed=12))
    return folder


def test_build_inspect_verify(npy_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    args = ["build", str(npy_input / "items.npy"), "--ids", str(npy_input / "ids.txt"), "--out", str(root)]
    assert main([*args, "--queries", str(npy_input / "queries.npy"), "--kind", "hnsw", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "kind         hnsw" in out and err == ""
    reader = IndexReader.open(layout.resolve_current(root))
    assert reader.manifest.id_type == "str" and reader.external_ids(np.array([0]))[0].startswith("sku-")
    source = reader.manifest.source  # both input files, since the ids file decides the ids
    assert source["name"] == "items.npy" and source["sha256"] == layout.sha256_of(npy_input / "items.npy")
    assert source["ids_name"] == "ids.txt" and source["ids_sha256"] == layout.sha256_of(npy_input / "ids.txt")
    assert main(["inspect", str(root)]) == 0
    assert reader.manifest.version in capsys.readouterr().out
    assert main(["verify", str(root)]) == 0
    assert "checksums    ok" in capsys.readouterr().out


def test_build_reports_progress_on_stderr(npy_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(npy_input / "items.npy"), "--out", str(tmp_path), "--kind", "ivf"]) == 0
    err = capsys.readouterr().err
    assert "no --queries" in err and "[add ivf]" in err and "eta" in err and "[tune ivf]" in err
    assert layout.read_manifest(layout.resolve_current(tmp_path)).tuning["queries_source"] == "sampled-items"


def test_verify_detects_corruption(npy_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert main(["build", str(npy_input / "items.npy"), "--out", str(root), "--kind", "flat", "--quiet"]) == 0
    ids_file = layout.resolve_current(root) / layout.IDS_FILE
    raw = bytearray(ids_file.read_bytes())
    raw[-1] ^= 0x01
    ids_file.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["verify", str(root)]) == 1
    assert "sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kind", "factory"], "--factory"),
        (["--target-recall", "1.5"], "--target-recall"),
        (["--k", "0"], "--k"),
        (["--keep", "0"], "--keep"),
    ],
)
def test_bad_options_exit_2(
    npy_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["build", str(npy_input / "items.npy"), "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not layout.list_versions(tmp_path / "r")


def test_bad_input_exit_2_nothing_published(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = np.ones((20, 4), dtype=np.float32)
    bad[7, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    root = tmp_path / "root"
    assert main(["build", str(tmp_path / "bad.npy"), "--out", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "7" in err
    assert not os.path.lexists(root / layout.CURRENT_LINK)


def test_unwritable_output_exit_2(npy_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["build", str(npy_input / "items.npy"), "--out", str(blocker / "root"), "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_factory_kind(npy_input: Path, tmp_path: Path) -> None:
    args = ["build", str(npy_input / "items.npy"), "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--kind", "factory", "--factory", "IVF32,SQ8"]) == 0
    manifest = layout.read_manifest(layout.resolve_current(tmp_path))
    assert manifest.factory == "IVF32,SQ8" and "nprobe" in manifest.default_params


@pytest.mark.parametrize("marker", ["exact top-", "building hnsw", "[tune hnsw]", "building ivf"])
def test_sigkill_mid_build_keeps_current(tmp_path: Path, marker: str) -> None:
    """Kill -9 the builder at a given stage: `current` still serves the old version, nothing half-written stays
    visible, and the next build cleans the dead build's staging directory."""
    items, centroids, _ = catalogue(30_000, 32, seed=5)
    np.save(tmp_path / "items.npy", items)
    np.save(tmp_path / "queries.npy", user_queries(centroids, 400, seed=6))
    root = tmp_path / "root"
    assert main(["build", str(tmp_path / "items.npy"), "--out", str(root), "--kind", "flat", "--quiet"]) == 0
    before = layout.resolve_current(root)
    command = [
        sys.executable,
        "-m",
        "index_builder",
        "build",
        str(tmp_path / "items.npy"),
        "--out",
        str(root),
        "--queries",
        str(tmp_path / "queries.npy"),
        "--kind",
        "auto",
    ]
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if marker in line:
                    break
            else:
                pytest.fail(f"builder finished without printing {marker!r}")
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert layout.resolve_current(root) == before
    assert layout.list_versions(root) == [before]
    IndexReader.open(before).search(items[:2], 5)
    assert main(["build", str(tmp_path / "items.npy"), "--out", str(root), "--kind", "flat", "--quiet"]) == 0
    assert not list(root.glob(layout.TMP_PREFIX + "*"))
    shutil.rmtree(root)
