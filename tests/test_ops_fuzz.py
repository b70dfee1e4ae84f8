"""Fuzzing with bounded examples: schemathesis over every operation of /openapi.json, and hypothesis over request
bodies, credentials, paths and methods with API keys on. Nothing a client sends gives a 5xx.

(tests/test_api_errors.py fuzzes /infer and /batch bodies with keys off.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings

ClientFactory = Callable[..., TestClient]
DIM = 16
USER_KEY = "fuzz-user-key-1"
ADMIN_KEY = "fuzz-admin-key-1"


@pytest.fixture(scope="module")
def api_schema(hnsw_root: Path) -> Any:
    """The schema served by an app with keys off (so generated requests reach validation and search)."""
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(index_root=hnsw_root)))


def test_every_documented_operation_answers_without_a_server_error(api_schema: Any) -> None:
    """schemathesis draws cases for each operation of /openapi.json (positive and negative), 30 per operation."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/infer", "/batch", "/index", "/metrics", "/admin/reload"}
    statuses: dict[str, list[int]] = {}
    for operation in operations:

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call()
            statuses.setdefault(case.path, []).append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
            case.validate_response(response, checks=[not_a_server_error])

        check()
    for path in ("/infer", "/batch"):
        assert len(statuses[path]) >= 20 and {200, 422} <= set(statuses[path]), (path, statuses[path])


@pytest.fixture(scope="module")
def keyed(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root, api_keys=USER_KEY, admin_keys=ADMIN_KEY, reload_interval=0.0)


credentials = st.one_of(
    st.just({}),
    st.sampled_from([USER_KEY, ADMIN_KEY, "", "x", USER_KEY + " ", USER_KEY[:-1]]).map(lambda k: {"x-api-key": k}),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
        lambda text: {"authorization": text}
    ),
    st.sampled_from(["Bearer ", "bearer ", "Basic ", "Bearer  "]).flatmap(
        lambda scheme: st.sampled_from([USER_KEY, ADMIN_KEY, "nope"]).map(lambda k: {"authorization": scheme + k})
    ),
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"name": st.text(max_size=5), "vector": st.lists(st.floats(-1e3, 1e3, width=32), min_size=DIM, max_size=DIM)},
        optional={"k": st.integers(-3, 200), "exact": st.booleans(), "params": st.just({"efSearch": 64})},
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
        max_leaves=10,
    ),
)
paths = st.sampled_from(["/infer", "/batch", "/index", "/readyz", "/healthz", "/metrics", "/admin/reload", "/nope"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, method=st.sampled_from(["GET", "POST", "PUT"]), headers=credentials, body=bodies)
def test_random_requests_with_keys_on_never_give_a_server_error(
    keyed: TestClient, path: str, method: str, headers: dict[str, str], body: Any
) -> None:
    content = json.dumps([body] if path == "/batch" and isinstance(body, dict) else body)
    response = keyed.request(method, path, content=content, headers={"content-type": "application/json", **headers})
    assert response.status_code in (200, 400, 401, 403, 404, 405, 413, 415, 422), (method, path, response.text)
    assert path == "/metrics" or isinstance(response.json(), dict | list), (method, path, response.content)
    scheme, _, token = headers.get("authorization", "").partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else headers.get("x-api-key", "").strip()
    if path not in ("/healthz", "/readyz", "/metrics", "/openapi.json") and key not in (USER_KEY, ADMIN_KEY):
        assert response.status_code == 401, (method, path, headers)
        assert response.headers["www-authenticate"].startswith("Bearer")
    elif path == "/admin/reload" and key == USER_KEY:
        assert response.status_code in (403, 405)
