"""Similar products (`POST /similar`, `POST /similar/batch`): the products whose stored vectors score highest
against one product's stored vector, excluding the product itself.

metric "ip": the product's vector is searched like a user vector (same index, filter policy, exclusions and params
as /infer), with its own id added to the exclusions.

metric "cosine": the top-k by cosine is not the top-k by inner product once norms differ, and an inner-product
index cannot search cosine space, so cosine is an exact scan: every (allowed) row's inner product divided by its
norm (O(rows × dim) per request; rows of norm 0 score 0). When all norms are equal within `EQUAL_NORMS_RTOL`
(unit-normalised embeddings such as instacart_products) the two orders coincide, and the inner-product search is used
and its scores divided by the norms.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from api.errors import ApiError, Problem, problem
from api.index_state import LoadedIndex
from api.schemas import OPTION_FIELDS, RequestRules, SearchRequest, parse_batch, parse_infer, valid_text
from api.service import Recommendation, recommend, with_metadata_of
from index_format.reader import IndexReader
from index_format.stored import StoredVectors, Unavailable

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

FIELDS = ("id", "k", "metric", "exact", "filter", "exclude", "params", *OPTION_FIELDS)
METRICS = ("ip", "cosine")
EQUAL_NORMS_RTOL = 1e-5  # the tie tolerance of float32 scores used throughout the tests


@dataclass(frozen=True)
class SimilarRequest:
    id: int | str
    metric: str
    search: SearchRequest  # k, exact, filter, exclude and params; its vector is a placeholder until resolved


class StoredCache:
    """One `StoredVectors` per served index version (an IVF,Flat builds its row locations once)."""

    def __init__(self) -> None:
        self._by_reader: weakref.WeakKeyDictionary[IndexReader, StoredVectors] = weakref.WeakKeyDictionary()

    def of(self, reader: IndexReader) -> StoredVectors:
        stored = self._by_reader.get(reader)
        if stored is None:
            stored = self._by_reader.setdefault(reader, StoredVectors(reader))
        return stored


# ---- validation ----------------------------------------------------------------------------------------------------


def parse_similar(body: Any, rules: RequestRules) -> SimilarRequest:
    problems: list[Problem] = []
    head = _id_and_metric(body, [], rules, problems)
    try:
        parsed = parse_infer(_stand_in(body, rules), rules)
    except ApiError as error:
        if error.status != 422 or not isinstance(error.detail, list):
            raise
        raise ApiError(422, error.detail + problems) from None
    if problems or head is None:
        raise ApiError(422, problems)
    return SimilarRequest(head[0], head[1], parsed)


def parse_similar_batch(body: Any, rules: RequestRules, max_batch: int) -> list[SimilarRequest]:
    if not isinstance(body, list):
        raise ApiError(422, [problem([], "expected a JSON array of request objects", "type_error")])
    if len(body) > max_batch:
        raise ApiError(413, f"batch of {len(body)} items is over the limit of {max_batch} items per request")
    problems: list[Problem] = []
    try:
        parsed = parse_batch([_stand_in(item, rules) for item in body], rules, max_batch)
    except ApiError as error:
        if error.status != 422 or not isinstance(error.detail, list):
            raise
        problems = list(error.detail)
        parsed = []
    heads = [_id_and_metric(item, [position], rules, problems) for position, item in enumerate(body)]
    if problems:
        problems.sort(key=lambda p: p["loc"][0] if p["loc"] else -1)
        raise ApiError(422, problems)
    return [SimilarRequest(h[0], h[1], p) for h, p in zip(heads, parsed, strict=True) if h is not None]


def _stand_in(raw: Any, rules: RequestRules) -> Any:
    """The /infer body that validates the shared options (k, exact, filter, exclude, params) with /infer's rules."""
    if not isinstance(raw, dict):
        return raw  # parse_infer / parse_batch report it
    shared = {key: value for key, value in raw.items() if key in FIELDS and key not in ("id", "metric")}
    return {**shared, "name": "", "vector": [0.0] * rules.dim}


def _id_and_metric(
    raw: Any, loc: list[str | int], rules: RequestRules, problems: list[Problem]
) -> tuple[int | str, str] | None:
    if not isinstance(raw, dict):
        return None
    before = len(problems)
    for key in raw:
        if key not in FIELDS:
            problems.append(problem([*loc, key], f"unknown field; allowed: {', '.join(FIELDS)}", "extra_field"))
    product = raw.get("id")
    if "id" not in raw:
        problems.append(problem([*loc, "id"], "field required: the product id", "missing"))
    elif rules.id_type == "str" and not isinstance(product, str):
        message = "expected a string id (this index has string ids)"
        problems.append(problem([*loc, "id"], message, "type_error"))
    elif rules.id_type == "int" and (isinstance(product, bool) or not isinstance(product, int)):
        message = "expected an integer id (this index has integer ids)"
        problems.append(problem([*loc, "id"], message, "type_error"))
    elif isinstance(product, str) and not valid_text(product):
        problems.append(problem([*loc, "id"], "not valid Unicode text (lone surrogate)", "value_error"))
    metric = raw.get("metric", "ip")
    if metric not in METRICS:
        problems.append(problem([*loc, "metric"], f"expected one of: {', '.join(METRICS)}", "value_error"))
    if len(problems) > before or not isinstance(product, int | str) or not isinstance(metric, str):
        return None
    return product, metric


# ---- search ----------------------------------------------------------------------------------------------------


def similar_bodies(
    loaded: LoadedIndex, requests: list[SimilarRequest], stored: StoredVectors, batch: bool
) -> list[dict[str, Any]]:
    """Responses in request order; 404 listing every unknown id, 501 when the index keeps no exact vectors."""
    reader = loaded.reader
    vectors = _product_vectors(loaded, requests, stored, batch)
    searches = [
        _similar_search(request.search, vectors[i], request.id, request.metric) for i, request in enumerate(requests)
    ]
    equal_norms = _equal_norms(reader)
    via_index = [i for i, request in enumerate(requests) if request.metric == "ip" or equal_norms]
    answers: list[list[Recommendation]] = [[] for _ in requests]
    for i, answer in zip(via_index, recommend(loaded, [searches[i] for i in via_index]), strict=True):
        answers[i] = answer
    for i, request in enumerate(requests):
        if request.metric != "cosine":
            continue
        if equal_norms:
            answers[i] = _as_cosine(reader, searches[i].vector, answers[i])
        else:
            answers[i] = exact_cosine(loaded, searches[i], stored)
        answers[i] = _page(answers[i], request.search)
    return [
        {"id": request.id, "metric": request.metric, "recommendations": answer}
        for request, answer in zip(requests, answers, strict=True)
    ]


def _product_vectors(loaded: LoadedIndex, requests: list[SimilarRequest], stored: StoredVectors, batch: bool) -> F32:
    """Each requested product's current vector: from the delta segment when it holds the id (added or replaced by
    `index-builder add`), else the main index. 404 listing every unknown id, then every hidden one; 501 when the
    index keeps no exact vectors."""
    engine = loaded.engine
    ids = [request.id for request in requests]
    rows = loaded.reader.rows_of_ids(ids)
    delta = engine.delta
    in_delta = delta.local_rows_of_ids(ids) if delta is not None else np.full(len(ids), -1, dtype=np.int64)
    visible_delta = engine.delta_visible if engine.delta_visible is not None else np.empty(0, dtype=np.int64)
    unknown: list[Problem] = []
    hidden: list[Problem] = []
    for position, product in enumerate(ids):
        where: list[str | int] = [position, "id"] if batch else ["id"]
        if in_delta[position] >= 0:
            if not np.isin(in_delta[position], visible_delta):
                hidden.append(
                    problem(where, f"product id {product!r} is hidden (withdrawn until restored)", "not_found")
                )
        elif rows[position] < 0:
            unknown.append(problem(where, f"unknown product id {product!r}", "not_found"))
        elif engine.is_hidden(rows[position : position + 1])[0]:
            hidden.append(problem(where, f"product id {product!r} is hidden (withdrawn until restored)", "not_found"))
    if unknown or hidden:
        raise ApiError(404, unknown or hidden)
    vectors = np.empty((len(ids), loaded.reader.dim), dtype=np.float32)
    main = in_delta < 0
    try:
        if main.any():
            vectors[main] = stored.of_rows(rows[main])
    except Unavailable as error:
        raise ApiError(501, str(error)) from None
    if delta is not None and not main.all():
        vectors[~main] = delta.vectors[in_delta[~main]]
    return vectors


def _similar_search(search: SearchRequest, vector: F32, product: int | str, metric: str) -> SearchRequest:
    """The search of one similar-products request: the product's vector, the product itself excluded. Cosine
    results are paged and thresholded after rescoring (`_page`), so their search fetches offset + k unpaged."""
    exclude = (*search.exclude, product)
    if metric == "cosine":
        k = search.offset + search.k
        return replace(search, vector=vector, exclude=exclude, k=k, offset=0, score_threshold=None)
    return replace(search, vector=vector, exclude=exclude)


def _page(answer: list[Recommendation], search: SearchRequest) -> list[Recommendation]:
    """Cosine results (best first): skip `offset`, keep k, then those scoring at least the threshold."""
    page = answer[search.offset : search.offset + search.k]
    if search.score_threshold is None:
        return page
    return [hit for hit in page if hit["score"] >= search.score_threshold]


def _equal_norms(reader: IndexReader) -> bool:
    if reader.count == 0:
        return True
    largest, smallest = float(reader.norms[0]), float(reader.norms[-1])  # rows are in descending-norm order
    return largest - smallest <= EQUAL_NORMS_RTOL * largest


def _as_cosine(reader: IndexReader, q: F32, answer: list[Recommendation]) -> list[Recommendation]:
    """Inner-product hits rescored as cosines (their order is already the cosine order: all norms are equal)."""
    if not answer:
        return answer
    q_norm = float(np.linalg.norm(q))
    norms = np.asarray(reader.norms)[reader.rows_of_ids([hit["id"] for hit in answer])]
    scale = q_norm * norms
    cosines = np.divide(
        np.array([hit["score"] for hit in answer], dtype=np.float32),
        scale,
        out=np.zeros(len(answer), np.float32),
        where=scale > 0,
    )
    return [{**hit, "score": score} for hit, score in zip(answer, cosines, strict=True)]


def exact_cosine(loaded: LoadedIndex, search: SearchRequest, stored: StoredVectors) -> list[Recommendation]:
    """Top-k by cosine over every (allowed) row, and the delta segment's, excluded ids left out; ties: larger norm
    (lower row) first."""
    reader, engine = loaded.reader, loaded.engine
    allowed = engine.visible_rows(search)
    rows = np.arange(reader.count, dtype=np.int64) if allowed is None else allowed
    q = search.vector
    q_norm = float(np.linalg.norm(q))
    cosines = np.empty(0, np.float32)
    if rows.size:
        ip = stored.scores(q, allowed)
        scale = q_norm * np.asarray(reader.norms)[rows]
        cosines = np.divide(ip, scale, out=np.zeros(rows.size, np.float32), where=scale > 0).astype(np.float32)
        excluded = reader.rows_of_ids(list(search.exclude))
        cosines[np.isin(rows, excluded[excluded >= 0])] = -np.inf
    delta_rows = engine.delta_rows(search)
    if engine.delta is not None and delta_rows is not None and delta_rows.size:
        delta = engine.delta
        scale = q_norm * np.asarray(delta.norms)[delta_rows]
        ip = np.asarray(delta.vectors)[delta_rows] @ q
        extra = np.divide(ip, scale, out=np.zeros(delta_rows.size, np.float32), where=scale > 0)
        rows = np.concatenate([rows, delta_rows + delta.base])
        cosines = np.concatenate([cosines, extra.astype(np.float32)])
    k = min(search.k, int(np.count_nonzero(cosines > -np.inf)))
    if k == 0:
        return []
    top = np.argpartition(-cosines, k - 1)[:k] if k < rows.size else np.arange(rows.size)
    kth = cosines[top].min()
    tied = np.flatnonzero(cosines >= kth)  # every tie at the cut, so the lower rows win it
    order = tied[np.lexsort((tied, -cosines[tied]))][:k]
    ids = engine.external_ids(rows[order])
    if search.with_metadata:
        return with_metadata_of(engine, rows[order], ids, cosines[order])
    return [{"id": id_, "score": score} for id_, score in zip(ids, cosines[order], strict=True)]
