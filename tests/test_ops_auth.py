"""API keys: 401 with a JSON body and WWW-Authenticate, both header styles, several keys at once, a keys file
re-read on change, open health endpoints, 403 for non-admin keys on admin endpoints, keys never logged."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api import auth
from api.auth import KeySet
from api.settings import Settings, SettingsError

ClientFactory = Callable[..., TestClient]
USER_KEYS = ("user-key-current-7f3a", "user-key-previous-91bc")
ADMIN_KEY = "admin-key-2d4e6f"
BODY = {"name": "u", "vector": [0.5] * 16}


@pytest.fixture(scope="module")
def client(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(
        hnsw_root, api_keys=",".join(USER_KEYS), admin_keys=ADMIN_KEY, reload_interval=0.0, access_log=True
    )


def test_a_request_without_a_key_is_401_with_json(client: TestClient) -> None:
    response = client.post("/infer", json=BODY)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == 'Bearer realm="recsys"'
    assert "missing API key" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"x-api-key": "nope"}, "invalid API key"),
        ({"authorization": "Bearer nope"}, "invalid API key"),
        ({"authorization": f"Basic {USER_KEYS[0]}"}, "missing API key"),  # only the Bearer scheme carries a key
        ({"authorization": "Bearer"}, "missing API key"),
    ],
)
def test_a_wrong_key_is_401(client: TestClient, headers: dict[str, str], detail: str) -> None:
    response = client.post("/infer", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith(detail)
    assert response.headers["www-authenticate"].startswith('Bearer realm="recsys"')


@pytest.mark.parametrize("key", [*USER_KEYS, ADMIN_KEY])
@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_every_configured_key_works_in_both_headers(client: TestClient, key: str, style: str) -> None:
    headers = {"authorization": f"Bearer {key}"} if style == "bearer" else {"x-api-key": key}
    response = client.post("/infer", json=BODY, headers=headers)
    assert response.status_code == 200
    assert len(response.json()["recommendations"]) == 10


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_open_endpoints_need_no_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_index_and_unknown_paths_need_a_key(client: TestClient) -> None:
    assert client.get("/index").status_code == 401
    assert client.get("/index", headers={"x-api-key": USER_KEYS[0]}).status_code == 200
    assert client.get("/no-such-path").status_code == 401  # no key: nothing about the routes is revealed


def test_admin_endpoints_need_an_admin_key(client: TestClient) -> None:
    assert client.post("/admin/reload").status_code == 401
    forbidden = client.post("/admin/reload", headers={"x-api-key": USER_KEYS[0]})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "this endpoint needs an admin key"}
    allowed = client.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert allowed.status_code == 200 and allowed.json()["outcome"] == "unchanged"


def test_failures_are_counted(client: TestClient) -> None:
    client.post("/infer", json=BODY, headers={"x-api-key": "nope"})
    text = client.get("/metrics").text
    assert 'recsys_auth_failures_total{reason="invalid"}' in text
    assert 'recsys_auth_failures_total{reason="not_admin"}' in text


def test_keys_never_appear_in_logs_or_settings(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/infer", json=BODY, headers={"x-api-key": USER_KEYS[0]})
    client.post("/infer", json=BODY, headers={"authorization": "Bearer wrong-key-abcdef"})
    client.post("/admin/reload", headers={"x-api-key": USER_KEYS[1]})
    assert any(record.name == "api.access" for record in caplog.records)
    logged = caplog.text + " ".join(repr(vars(record)) for record in caplog.records)
    for key in (*USER_KEYS, ADMIN_KEY, "wrong-key-abcdef"):
        assert key not in logged
    settings = Settings(api_keys=USER_KEYS[0], admin_keys=ADMIN_KEY)
    assert USER_KEYS[0] not in repr(settings) and ADMIN_KEY not in repr(settings)


def test_keys_file_rotation_without_restart(
    client_factory: ClientFactory, hnsw_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "FILE_CHECK_SECONDS", 0.0)
    keys_file = tmp_path / "keys"
    keys_file.write_text("# rotated daily\nfile-key-old\n\n")
    client = client_factory(hnsw_root, api_keys_file=str(keys_file), reload_interval=0.0)
    assert client.post("/infer", json=BODY, headers={"x-api-key": "file-key-old"}).status_code == 200
    keys_file.write_text("file-key-old\nfile-key-new\n")  # rotation: both valid for a while
    assert client.post("/infer", json=BODY, headers={"x-api-key": "file-key-new"}).status_code == 200
    assert client.post("/infer", json=BODY, headers={"x-api-key": "file-key-old"}).status_code == 200
    keys_file.write_text("file-key-new\n")
    stat = keys_file.stat()
    os.utime(keys_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert client.post("/infer", json=BODY, headers={"x-api-key": "file-key-old"}).status_code == 401
    keys_file.unlink()  # an unreadable file keeps the keys read before
    assert client.post("/infer", json=BODY, headers={"x-api-key": "file-key-new"}).status_code == 200
    assert client.post("/admin/reload", headers={"x-api-key": "file-key-new"}).status_code == 403


def test_a_missing_keys_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="RECSYS_API_KEYS_FILE"):
        KeySet("", str(tmp_path / "absent"), "RECSYS_API_KEYS_FILE")


def test_without_keys_everything_is_open(client_factory: ClientFactory, hnsw_root: Path) -> None:
    client = client_factory(hnsw_root, reload_interval=0.0)
    assert client.post("/infer", json=BODY).status_code == 200
    assert client.post("/admin/reload").status_code == 200


def test_matching_compares_against_every_key() -> None:
    keys = KeySet("a,b,c", "", "test")
    assert keys.matches(auth._digest("c")) and not keys.matches(auth._digest("d"))
    assert not keys.matches(auth._digest(""))
