"""Health, readiness, /index, /openapi.json, settings, and start-up on a missing / corrupt / incompatible index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings, SettingsError, unknown_variables
from index_format import layout

ClientFactory = Callable[..., TestClient]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root)


def test_healthz_and_readyz(client: TestClient, hnsw_root: Path) -> None:
    version = layout.resolve_current(hnsw_root).name
    alive = client.get("/healthz")
    assert alive.json() == {"status": "alive"}
    assert alive.headers["x-index-version"] == version
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "version": version}
    assert ready.headers["x-index-version"] == version


def test_not_ready_before_the_index_is_loaded(hnsw_root: Path) -> None:
    client = TestClient(create_app(Settings(index_root=hnsw_root)))  # no `with`: the lifespan has not run
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/index"):
        response = client.get(path)
        assert response.status_code == 503
        assert "not loaded" in response.json()["detail"]
    assert client.post("/infer", json={"name": "a", "vector": [0.0] * 16}).status_code == 503


def test_index_describes_the_manifest(client: TestClient, hnsw_root: Path) -> None:
    manifest = layout.read_manifest(layout.resolve_current(hnsw_root))
    info = client.get("/index").json()
    assert info["version"] == manifest.version
    assert info["kind"] == "hnsw"
    assert (info["count"], info["dim"]) == (3000, 16)
    assert info["built_at"] == manifest.built_at
    assert info["default_params"] == manifest.default_params
    assert info["recall_at_k"] == manifest.recall_at_k and info["k"] == 10
    assert info["search_params"] == {"efSearch": {"min": 1, "max": 2048}}
    assert info["limits"]["max_k"] == 100 and info["limits"]["max_batch"] == 1000
    assert info["id_type"] == "str"


def test_openapi_is_a_valid_3_1_spec_covering_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    app = client.app
    assert isinstance(app, Starlette)
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    served -= {(path, "head") for path, _ in served}
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == documented
    vector = spec["components"]["schemas"]["InferRequest"]["properties"]["vector"]
    assert vector["minItems"] == vector["maxItems"] == 16


def test_openapi_before_loading_is_still_valid(hnsw_root: Path) -> None:
    client = TestClient(create_app(Settings(index_root=hnsw_root)))
    validate(client.get("/openapi.json").json())


# ---- settings ---------------------------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    env = {
        "RECSYS_INDEX_ROOT": "/srv/idx",
        "RECSYS_PORT": "8080",
        "RECSYS_WORKERS": "4",
        "RECSYS_MAX_K": "50",
        "RECSYS_ACCESS_LOG": "yes",
        "RECSYS_LOG_LEVEL": "WARNING",
        "RECSYS_FILTER_EXACT_FRACTION": "0.25",
        "RECSYS_HOST": "",  # empty means default
        "RECSYS_HTTP": "H11",
        "RECSYS_LOOP": "asyncio",
        "OTHER": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings.index_root == Path("/srv/idx")
    assert (settings.port, settings.workers, settings.max_k) == (8080, 4, 50)
    assert settings.access_log is True and settings.log_level == "warning"
    assert settings.filter_exact_fraction == 0.25
    assert settings.host == "127.0.0.1"
    assert (settings.http, settings.loop) == ("h11", "asyncio")
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("RECSYS_PORT", "http", "expected an integer"),
        ("RECSYS_PORT", "70000", "between 0 and 65535"),
        ("RECSYS_MAX_K", "0", "between 1"),
        ("RECSYS_ACCESS_LOG", "maybe", "expected one of"),
        ("RECSYS_LOG_LEVEL", "loud", "expected one of"),
        ("RECSYS_HTTP", "h2", "expected one of auto, httptools, h11"),
        ("RECSYS_LOOP", "trio", "expected one of auto, uvloop, asyncio"),
        ("RECSYS_FILTER_EXACT_FRACTION", "2", "between 0.0 and 1.0"),
    ],
)
def test_bad_settings_name_the_variable(key: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=key) as error:
        Settings.from_env({key: value})
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--workers", "500"], "--workers: RECSYS_WORKERS=500: must be between 1 and 256"),
        (["--port", "70000"], "--port: RECSYS_PORT=70000: must be between 0 and 65535"),
        (["--workers", "0"], "--workers: RECSYS_WORKERS=0: must be between 1 and 256"),
    ],
)
def test_command_line_flags_are_bounded_like_the_environment(flags: list[str], fragment: str) -> None:
    from api.__main__ import _parser, settings_from

    with pytest.raises(SettingsError) as error:
        settings_from(_parser().parse_args(flags), {})
    assert str(error.value) == fragment
    with pytest.raises(SettingsError):
        Settings.from_env({f"RECSYS_{flags[0][2:].upper()}": flags[1]})


def test_command_line_flags_override_the_environment() -> None:
    from api.__main__ import _parser, settings_from

    args = _parser().parse_args(["--workers", "3", "--access-log", "--index-root", "/srv/x"])
    settings = settings_from(args, {"RECSYS_WORKERS": "2", "RECSYS_PORT": "6000"})
    assert (settings.workers, settings.port, settings.access_log) == (3, 6000, True)
    assert settings.index_root == Path("/srv/x")


def test_unknown_variables_are_reported() -> None:
    assert unknown_variables({"RECSYS_MAX_BATCHES": "5", "RECSYS_MAX_BATCH": "5", "PATH": "/bin"}) == [
        "RECSYS_MAX_BATCHES"
    ]


# ---- start-up failures ------------------------------------------------------------------------------------------


def copy_index(source_root: Path, target_root: Path) -> Path:
    version_dir = layout.resolve_current(source_root)
    shutil.copytree(version_dir, target_root / version_dir.name)
    (target_root / layout.CURRENT_LINK).symlink_to(version_dir.name)
    return target_root / version_dir.name


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def broken_roots(source_root: Path, tmp_path: Path) -> dict[str, Path]:
    roots = {}
    roots["missing"] = tmp_path / "nothing-here"
    corrupt = copy_index(source_root, tmp_path / "corrupt")
    flip_byte(corrupt / layout.INDEX_FILE, corrupt.joinpath(layout.INDEX_FILE).stat().st_size // 2)
    roots["corrupt"] = tmp_path / "corrupt"
    future = copy_index(source_root, tmp_path / "future")
    manifest = json.loads((future / layout.MANIFEST).read_text())
    manifest["format_version"] = 99
    (future / layout.MANIFEST).write_text(json.dumps(manifest))
    roots["incompatible"] = tmp_path / "future"
    return roots


EXPECTED_MESSAGE = {"missing": "no 'current' link", "corrupt": "sha256", "incompatible": "format version 99"}


@pytest.mark.parametrize("case", ["missing", "corrupt", "incompatible"])
def test_app_refuses_to_start_on_a_bad_index(
    case: str, pruned_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = broken_roots(pruned_root, tmp_path)[case]
    with pytest.raises(layout.FormatError, match=EXPECTED_MESSAGE[case]):
        with TestClient(create_app(Settings(index_root=root))):
            pass
    assert any("cannot serve the index" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("case", ["missing", "corrupt", "incompatible"])
def test_cli_exits_non_zero_with_one_clear_line(case: str, pruned_root: Path, tmp_path: Path) -> None:
    root = broken_roots(pruned_root, tmp_path)[case]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "api", "--index-root", str(root), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if "cannot serve the index" in line]
    assert len(lines) == 1 and EXPECTED_MESSAGE[case] in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_rejects_bad_settings_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_MAX_K": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "api", "--index-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "RECSYS_MAX_K" in done.stderr
