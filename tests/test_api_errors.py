"""Every client error is a JSON {"detail": ...} with the right status; nothing a client sends gives a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

ClientFactory = Callable[..., TestClient]
DIM = 16
JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(client_factory: ClientFactory, hnsw_root: Path) -> TestClient:
    return client_factory(hnsw_root, max_body_bytes=64 * 1024, max_exclude=5)


@pytest.fixture(scope="module")
def int_client(client_factory: ClientFactory, pruned_root: Path) -> TestClient:
    return client_factory(pruned_root)


def good(**changes: Any) -> dict[str, Any]:
    return {"name": "mike", "vector": [0.5] * DIM, **changes}


def post_raw(client: TestClient, path: str, body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    return client.post(path, content=body, headers=JSON_HEADERS if headers is None else headers)


def problems(response: Any) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    return [(p["loc"], p["msg"]) for p in response.json()["detail"]]


# ---- 400: malformed JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b"", b"[1,]", b'{"name": "a",}', b"\xff\xfe{}", b"nul", b"{'a': 1}"])
@pytest.mark.parametrize("path", ["/infer", "/batch"])
def test_malformed_json_is_400(client: TestClient, path: str, body: bytes) -> None:
    response = post_raw(client, path, body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed JSON")


def test_deeply_nested_json_is_400_not_a_crash(client: TestClient) -> None:
    response = post_raw(client, "/infer", b"[" * 30_000 + b"]" * 30_000)
    assert response.status_code == 400


# ---- 422: non-finite and out-of-range numbers -------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_rejected_with_their_location(client: TestClient, literal: str) -> None:
    vector = ["0.5"] * DIM
    vector[3] = literal
    body = '{"name": "a", "vector": [' + ", ".join(vector) + "]}"
    assert problems(post_raw(client, "/infer", body)) == [(["vector", 3], "not a finite number")]
    batch = "[" + json.dumps(good()) + ", " + body + "]"
    assert problems(post_raw(client, "/batch", batch)) == [([1, "vector", 3], "not a finite number")]


@pytest.mark.parametrize("value", ["1e39", "-3.5e38", str(10**400), str(-(10**40))])
def test_numbers_beyond_float32_are_rejected(client: TestClient, value: str) -> None:
    body = '{"name": "a", "vector": [' + ", ".join([value] + ["0.5"] * (DIM - 1)) + "]}"
    assert problems(post_raw(client, "/infer", body)) == [(["vector", 0], "out of float32 range")]


def test_non_finite_literal_outside_the_vector(client: TestClient) -> None:
    body = '{"name": "a", "vector": [' + ", ".join(["0.5"] * DIM) + '], "k": NaN}'
    [(loc, msg)] = problems(post_raw(client, "/infer", body))
    assert loc == ["k"] and "expected an integer" in msg


# ---- 422: schema problems, every one listed ---------------------------------------------------------------------


def test_every_problem_is_listed_with_its_location(client: TestClient) -> None:
    vector: list[Any] = [0.5] * DIM
    vector[2], vector[5], vector[9] = True, "1.0", None
    body = {"vector": vector, "k": "10", "exact": 1, "filter": {"colour": ["red"]}, "bogus": 1}
    found = dict((tuple(loc), msg) for loc, msg in problems(client.post("/infer", json=body)))
    assert set(found) == {
        ("bogus",),
        ("name",),
        ("vector", 2),
        ("vector", 5),
        ("vector", 9),
        ("k",),
        ("exact",),
        ("filter", "colour"),
    }
    assert found[("vector", 2)] == "expected a number, got a boolean"
    assert found[("vector", 5)] == "expected a number, got a string"
    assert found[("vector", 9)] == "expected a number, got null"
    assert "category" in found[("filter", "colour")]


@pytest.mark.parametrize("size", [0, 1, DIM - 1, DIM + 1])
def test_wrong_dimension_says_the_expected_one(client: TestClient, size: int) -> None:
    [(loc, msg)] = problems(client.post("/infer", json=good(vector=[0.1] * size)))
    assert loc == ["vector"]
    assert f"expected {DIM}" in msg and f"got {size}" in msg


def test_many_bad_numbers_are_summarised(client: TestClient) -> None:
    found = problems(client.post("/infer", json=good(vector=["x"] * DIM)))
    assert len(found) == 11
    assert found[-1] == (["vector"], "16 invalid numbers in total; the first 10 are listed")


@pytest.mark.parametrize(
    ("changes", "loc", "fragment"),
    [
        ({"vector": None}, ["vector"], "required"),
        ({"vector": "0.5,0.5"}, ["vector"], "expected an array"),
        ({"name": 7}, ["name"], "expected a string"),
        ({"name": None}, ["name"], "expected a string"),
        ({"k": 0}, ["k"], "between 1 and 100"),
        ({"k": 101}, ["k"], "between 1 and 100"),
        ({"k": -3}, ["k"], "between 1 and 100"),
        ({"k": 2.5}, ["k"], "expected an integer"),
        ({"k": True}, ["k"], "expected an integer"),
        ({"exact": "yes"}, ["exact"], "true or false"),
        ({"filter": ["drinks"]}, ["filter"], "expected an object"),
        ({"filter": {"category": "drinks"}}, ["filter", "category"], "expected an array"),
        ({"filter": {"category": ["drinks", "nope"]}}, ["filter", "category", 1], "unknown value 'nope'"),
        ({"filter": {"category": [3]}}, ["filter", "category", 0], "expected a string"),
        ({"exclude": "p1"}, ["exclude"], "expected an array"),
        ({"exclude": ["p1", 2]}, ["exclude", 1], "expected a string id"),
        ({"exclude": [f"p{i}" for i in range(6)]}, ["exclude"], "at most 5"),
        ({"params": {"nprobe": 8}}, ["params", "nprobe"], "accepts: efSearch"),
        ({"params": {"efSearch": 0}}, ["params", "efSearch"], "between 1 and 2048"),
        ({"params": {"efSearch": 5000}}, ["params", "efSearch"], "between 1 and 2048"),
        ({"params": {"efSearch": "64"}}, ["params", "efSearch"], "expected an integer"),
        ({"params": 64}, ["params"], "expected an object"),
    ],
)
def test_field_problems(client: TestClient, changes: dict[str, Any], loc: list[Any], fragment: str) -> None:
    [(got_loc, msg)] = problems(client.post("/infer", json=good(**changes)))
    assert got_loc == loc
    assert fragment in msg


@pytest.mark.parametrize("body", [good(filters={}), good(group_by="category", filters={})])
def test_unknown_field_lists_every_accepted_field(client: TestClient, body: dict[str, Any]) -> None:
    """Grouped or not, the message names every field /infer accepts, group_by, group_size and groups included."""
    ((loc, message),) = problems(client.post("/infer", json=body))
    assert loc == ["filters"]
    accepted = message.split("allowed: ", 1)[1].split(", ")
    assert sorted(accepted) == sorted(
        [
            "name",
            "vector",
            "k",
            "exact",
            "filter",
            "exclude",
            "params",
            "offset",
            "score_threshold",
            "with_metadata",
            "group_by",
            "group_size",
            "groups",
        ]
    )
    for field in accepted:  # each is really accepted: a body with it is not refused as unknown
        value = {"k": 3, "exact": True, "filter": {}, "exclude": [], "params": {}, "group_size": 2, "groups": 2}
        extra = {field: value[field]} if field in value else {}
        grouped = {"group_by": "category"} if field in ("group_size", "groups") else {}
        response = client.post("/infer", json={**good(), **grouped, **extra})
        assert response.status_code == 200, (field, response.text)


def test_integer_id_index_rejects_string_exclusions(int_client: TestClient) -> None:
    found = problems(int_client.post("/infer", json=good(exclude=[100003, "100010", True])))
    assert [loc for loc, _ in found] == [["exclude", 1], ["exclude", 2]]
    assert all("integer id" in msg for _, msg in found)


def test_exact_index_takes_no_search_params(int_client: TestClient) -> None:
    [(loc, msg)] = problems(int_client.post("/infer", json=good(params={"efSearch": 64})))
    assert loc == ["params", "efSearch"] and "accepts: none" in msg


@pytest.mark.parametrize("body", ['["a"]', "3", '"text"', "null"])
def test_infer_body_must_be_an_object(client: TestClient, body: str) -> None:
    [(loc, msg)] = problems(post_raw(client, "/infer", body))
    assert loc == [] and "expected an object" in msg


def test_lone_surrogates_are_rejected_not_crashing(client: TestClient) -> None:
    vector = ", ".join(["0.5"] * DIM)
    body = (
        '{"name": "\\ud800", "vector": [' + vector + '], "exclude": ["\\udfff"], "filter": {"category": ["\\ud83d"]}}'
    )
    found = problems(post_raw(client, "/infer", body))
    assert [loc for loc, _ in found] == [["name"], ["filter", "category", 0], ["exclude", 0]]


# ---- 413 / 415 / 404 / 405 -------------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = json.dumps(good(name="x" * 70_000))
    response = post_raw(client, "/infer", big)
    assert response.status_code == 413
    assert "65536" in response.json()["detail"]


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = client.post("/batch", content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413


@pytest.mark.parametrize(
    "headers", [{"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}]
)
@pytest.mark.parametrize("path", ["/infer", "/batch"])
def test_wrong_content_type_is_415(client: TestClient, path: str, headers: dict[str, str]) -> None:
    response = post_raw(client, path, json.dumps(good()), headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_content_type_with_charset_is_fine(client: TestClient) -> None:
    response = post_raw(client, "/infer", json.dumps(good()), {"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/recommend")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert "x-index-version" in response.headers


@pytest.mark.parametrize(("method", "path"), [("GET", "/infer"), ("PUT", "/batch"), ("POST", "/healthz")])
def test_wrong_method_is_json_405(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert "allow" in response.headers


def test_errors_carry_the_index_version(client: TestClient) -> None:
    response = client.post("/infer", json=good(k=0))
    assert response.status_code == 422
    assert response.headers["x-index-version"] == client.get("/index").json()["version"]


# ---- nothing a client sends produces a 5xx ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "vector": st.one_of(
            st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=DIM, max_size=DIM),
            json_values,
        ),
        "k": st.one_of(st.integers(-5, 200), json_values),
        "exact": json_values,
        "filter": st.one_of(
            st.fixed_dictionaries({"category": st.lists(st.sampled_from(["drinks", "bulk", "x"]), max_size=3)}),
            json_values,
        ),
        "exclude": st.one_of(st.lists(st.sampled_from(["p1", "p2", "zz"]), max_size=7), json_values),
        "params": st.one_of(st.fixed_dictionaries({"efSearch": st.integers(-2, 3000)}), json_values),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(request_like, json_values, st.lists(request_like, max_size=4)))
def test_random_bodies_never_give_a_server_error(client: TestClient, body: Any) -> None:
    for path in ("/infer", "/batch"):
        response = client.post(path, content=json.dumps(body), headers=JSON_HEADERS)
        assert response.status_code in (200, 400, 413, 422), response.text
        assert isinstance(response.json(), list | dict)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_random_bytes_never_give_a_server_error(client: TestClient, raw: bytes) -> None:
    response = post_raw(client, "/infer", raw)
    assert response.status_code in (400, 422)
