"""Hand-written validation of /infer and /batch bodies: every problem is collected with its location.

A location is a path into the body, e.g. ``[3, "vector", 17]`` for the 18th number of the 4th batch item. Vectors
take a fast path (one ``set(map(type, ...))`` check and one numpy conversion); only a bad vector is walked element
by element to say where it is bad.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api.errors import ApiError, Problem, problem
from api.jsonbody import NonFinite
from index_format.plan import ParamsKey
from index_format.query import FilterKey, Query

F32 = npt.NDArray[np.float32]

OPTION_FIELDS = ("offset", "score_threshold", "with_metadata")  # paging and result options (full validation path)
MAX_ELEMENT_PROBLEMS = 10  # per vector; a summary entry counts the rest
FIELDS = ("name", "vector", "k", "exact", "filter", "exclude", "params", *OPTION_FIELDS)
KNOWN_FIELDS = frozenset(FIELDS)
GROUP_FIELDS = ("group_by", "group_size", "groups")  # also accepted by /infer and /batch (api/grouping.py)


@dataclass(frozen=True)
class RequestRules:
    """What a valid request looks like for the loaded index and the configured limits."""

    dim: int
    id_type: str  # "int" or "str"
    metadata: Mapping[str, frozenset[str]]  # filterable field -> known values
    param_limits: Mapping[str, int]  # per-request search parameter -> largest allowed value
    family: str
    max_k: int
    max_exclude: int
    default_k: int = 10
    max_window: int = 1000  # offset + k at most this (a page deep in the ranking costs a fetch of offset + k)


@dataclass(frozen=True)
class SearchRequest(Query):
    """A validated /infer body (or /batch item): the query and the name the answer carries."""

    name: str = ""


def parse_infer(body: Any, rules: RequestRules) -> SearchRequest:
    problems: list[Problem] = []
    parsed = _parse_item(body, [], rules, problems)
    if problems or parsed is None:
        raise ApiError(422, problems)
    return parsed


def parse_batch(body: Any, rules: RequestRules, max_batch: int) -> list[SearchRequest]:
    if not isinstance(body, list):
        raise ApiError(422, [problem([], f"expected a JSON array of request objects, got {_kind(body)}", "type_error")])
    if len(body) > max_batch:
        raise ApiError(413, f"batch of {len(body)} items is over the limit of {max_batch} items per request")
    problems: list[Problem] = []
    parsed = [_parse_item(item, [position], rules, problems) for position, item in enumerate(body)]
    if problems:
        raise ApiError(422, problems)
    return [item for item in parsed if item is not None]


NUMBER_TYPES = frozenset({float, int})
FLOAT32_MAX = float(np.finfo(np.float32).max)
PLAIN_FIELDS = frozenset({"name", "vector", "k", "exact"})


def _plain_item(raw: Any, rules: RequestRules) -> SearchRequest | None:
    """The common request (name, vector, optional k and exact; nothing else), validated with a few checks; None when
    anything about it needs `_parse_item`'s full walk (which also says what is wrong, and where)."""
    if type(raw) is not dict or not raw.keys() <= PLAIN_FIELDS:
        return None
    name, vector, k, exact = raw.get("name"), raw.get("vector"), raw.get("k", rules.default_k), raw.get("exact", False)
    if type(name) is not str or type(vector) is not list or type(k) is not int or type(exact) is not bool:
        return None
    if len(vector) != rules.dim or not 1 <= k <= rules.max_k or not set(map(type, vector)) <= NUMBER_TYPES:
        return None
    # JSON numbers are finite (a NaN literal is not a float here); only values beyond float32 need the full walk.
    if not (-FLOAT32_MAX <= min(vector) and max(vector) <= FLOAT32_MAX) or not valid_text(name):
        return None
    return SearchRequest(vector=np.array(vector, dtype=np.float32), k=k, exact=exact, name=name)


def _parse_item(raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]) -> SearchRequest | None:
    plain = _plain_item(raw, rules)
    if plain is not None:
        return plain
    if not isinstance(raw, dict):
        problems.append(problem(loc, f"expected an object, got {_kind(raw)}", "type_error"))
        return None
    before = len(problems)
    for key in raw:
        if key not in KNOWN_FIELDS:
            allowed = ", ".join((*FIELDS, *GROUP_FIELDS))
            problems.append(problem([*loc, key], f"unknown field; allowed: {allowed}", "extra_field"))
    name = _name(raw, loc, problems)
    vector = _vector(raw.get("vector"), [*loc, "vector"], rules.dim, problems)
    k = _k(raw.get("k", rules.default_k), [*loc, "k"], rules.max_k, problems)
    exact = raw.get("exact", False)
    if not isinstance(exact, bool):
        problems.append(problem([*loc, "exact"], f"expected true or false, got {_kind(exact)}", "type_error"))
    filter_key = _filter(raw.get("filter"), [*loc, "filter"], rules, problems)
    exclude = _exclude(raw.get("exclude"), [*loc, "exclude"], rules, problems)
    params = _params(raw.get("params"), [*loc, "params"], rules, problems)
    offset, threshold, with_metadata = _options(raw, loc, k, rules, problems)
    if len(problems) > before or vector is None or name is None or k is None:
        return None
    return SearchRequest(
        vector=vector,
        k=k,
        exact=bool(exact),
        filter=filter_key,
        exclude=exclude,
        params=params,
        offset=offset,
        score_threshold=threshold,
        with_metadata=with_metadata,
        name=name,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, NonFinite):
        return f"{value.literal} (not a finite number)"
    return type(value).__name__


def valid_text(text: str) -> bool:
    """False for strings holding lone surrogates (possible only through the stdlib fallback parser)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(raw: dict[str, Any], loc: list[str | int], problems: list[Problem]) -> str | None:
    if "name" not in raw:
        problems.append(problem([*loc, "name"], "field required", "missing"))
        return None
    name = raw["name"]
    if not isinstance(name, str):
        problems.append(problem([*loc, "name"], f"expected a string, got {_kind(name)}", "type_error"))
        return None
    if not valid_text(name):
        problems.append(problem([*loc, "name"], "not valid Unicode text (lone surrogate)", "value_error"))
        return None
    return name


def _vector(raw: Any, loc: list[str | int], dim: int, problems: list[Problem]) -> F32 | None:
    if raw is None:
        problems.append(problem(loc, f"field required: an array of {dim} numbers", "missing"))
        return None
    if not isinstance(raw, list):
        problems.append(problem(loc, f"expected an array of {dim} numbers, got {_kind(raw)}", "type_error"))
        return None
    ok = True
    if len(raw) != dim:
        problems.append(
            problem(loc, f"wrong dimension: expected {dim} numbers (the index dimension), got {len(raw)}", "dimension")
        )
        ok = False
    if set(map(type, raw)) <= {float, int}:
        try:
            values = np.array(raw, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            values = None
        if values is not None:
            with np.errstate(over="ignore"):
                vector = values.astype(np.float32)
            if bool(np.isfinite(vector).all()):
                return vector if ok else None
    _element_problems(raw, loc, problems)
    return None


def _element_problems(raw: list[Any], loc: list[str | int], problems: list[Problem]) -> None:
    bad = 0
    for position, value in enumerate(raw):
        message = _number_problem(value)
        if message is None:
            continue
        bad += 1
        if bad <= MAX_ELEMENT_PROBLEMS:
            kind = "type_error" if message.startswith("expected") else "value_error"
            problems.append(problem([*loc, position], message, kind))
    if bad > MAX_ELEMENT_PROBLEMS:
        problems.append(
            problem(loc, f"{bad} invalid numbers in total; the first {MAX_ELEMENT_PROBLEMS} are listed", "value_error")
        )


def _number_problem(value: Any) -> str | None:
    if isinstance(value, NonFinite):
        return "not a finite number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {_kind(value)}"
    try:
        number = float(value)
    except OverflowError:
        return "out of float32 range"
    if not math.isfinite(number):
        return "not a finite number"
    with np.errstate(over="ignore"):
        in_range = bool(np.isfinite(np.float32(number)))
    return None if in_range else "out of float32 range"


def _int_in(value: Any, loc: list[str | int], low: int, high: int, problems: list[Problem]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(problem(loc, f"expected an integer, got {_kind(value)}", "type_error"))
        return None
    if not low <= value <= high:
        problems.append(problem(loc, f"must be between {low} and {high}, got {value}", "value_error"))
        return None
    return value


def _k(raw: Any, loc: list[str | int], max_k: int, problems: list[Problem]) -> int | None:
    return _int_in(raw, loc, 1, max_k, problems)


def _filter(raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]) -> FilterKey | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(problem(loc, f"expected an object of field: [values], got {_kind(raw)}", "type_error"))
        return None
    fields = []
    for field_name, values in raw.items():
        field_loc = [*loc, field_name]
        known = rules.metadata.get(field_name)
        if known is None:
            choices = ", ".join(sorted(rules.metadata)) or "none"
            problems.append(problem(field_loc, f"unknown filter field; this index has: {choices}", "value_error"))
            continue
        if not isinstance(values, list):
            problems.append(problem(field_loc, f"expected an array of strings, got {_kind(values)}", "type_error"))
            continue
        for position, value in enumerate(values):
            if not isinstance(value, str):
                message = f"expected a string, got {_kind(value)}"
                problems.append(problem([*field_loc, position], message, "type_error"))
            elif value not in known:
                message = f"unknown value {value!r} for {field_name!r}"
                problems.append(problem([*field_loc, position], message, "value_error"))
        fields.append((field_name, tuple(sorted({v for v in values if isinstance(v, str)}))))
    return tuple(sorted(fields)) or None  # {} filters nothing out


def _exclude(raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]) -> tuple[int | str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(problem(loc, f"expected an array of product ids, got {_kind(raw)}", "type_error"))
        return ()
    if len(raw) > rules.max_exclude:
        message = f"at most {rules.max_exclude} ids can be excluded, got {len(raw)}"
        problems.append(problem(loc, message, "value_error"))
        return ()
    for position, value in enumerate(raw):
        if rules.id_type == "str":
            if not isinstance(value, str):
                message = f"expected a string id (this index has string ids), got {_kind(value)}"
                problems.append(problem([*loc, position], message, "type_error"))
            elif not valid_text(value):
                problems.append(problem([*loc, position], "not valid Unicode text (lone surrogate)", "value_error"))
        elif isinstance(value, bool) or not isinstance(value, int):
            message = f"expected an integer id (this index has integer ids), got {_kind(value)}"
            problems.append(problem([*loc, position], message, "type_error"))
    return tuple(raw)


def _params(raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]) -> ParamsKey:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append(problem(loc, f"expected an object, got {_kind(raw)}", "type_error"))
        return ()
    out = []
    for param_name, value in raw.items():
        limit = rules.param_limits.get(param_name)
        if limit is None:
            accepted = ", ".join(sorted(rules.param_limits)) or "none"
            message = f"not a search parameter of this index ({rules.family}); it accepts: {accepted}"
            problems.append(problem([*loc, param_name], message, "value_error"))
            continue
        checked = _int_in(value, [*loc, param_name], 1, limit, problems)
        if checked is not None:
            out.append((param_name, checked))
    return tuple(sorted(out))


def _options(
    raw: dict[str, Any], loc: list[str | int], k: int | None, rules: RequestRules, problems: list[Problem]
) -> tuple[int, float | None, bool]:
    """offset (0 up to max_window - k), score_threshold (a finite number) and with_metadata (a boolean)."""
    offset = 0
    value = raw.get("offset", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(problem([*loc, "offset"], f"expected an integer, got {_kind(value)}", "type_error"))
    elif value < 0 or value + (k or 1) > rules.max_window:
        message = f"must be at least 0 with offset + k at most {rules.max_window}, got offset {value} and k {k}"
        problems.append(problem([*loc, "offset"], message, "value_error"))
    else:
        offset = value
    threshold: float | None = None
    if raw.get("score_threshold") is not None:
        value = raw["score_threshold"]
        trouble = _number_problem(value)
        if trouble is not None:
            kind = "type_error" if trouble.startswith("expected") else "value_error"
            problems.append(problem([*loc, "score_threshold"], trouble, kind))
        else:
            threshold = float(value)
    with_metadata = raw.get("with_metadata", False)
    if not isinstance(with_metadata, bool):
        message = f"expected true or false, got {_kind(with_metadata)}"
        problems.append(problem([*loc, "with_metadata"], message, "type_error"))
        with_metadata = False
    return offset, threshold, with_metadata
