"""OpenAPI pieces of the recommendation features (group_by, /similar, categories in /index), added to the document
api/openapi.py builds."""

from __future__ import annotations

import copy
from typing import Any

from api.grouping import DEFAULT_GROUP_SIZE, DEFAULT_GROUPS
from api.index_state import LoadedIndex
from api.schemas import OPTION_FIELDS
from api.settings import Settings
from api.similar import METRICS

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def add_features(spec: dict[str, Any], settings: Settings, loaded: LoadedIndex | None) -> None:
    """Extend the /infer and /batch schemas with grouping, add /similar and /similar/batch, in place."""
    schemas = spec["components"]["schemas"]
    fields = sorted(loaded.rules.metadata) if loaded is not None else None
    group_by: dict[str, Any] = {
        "type": "string",
        "description": "Per-category top-n: the metadata field to group by (GET /index `categories`). The answer "
        "is a GroupedInferResponse; `k` is then not accepted.",
    }
    if fields:
        group_by["enum"] = fields
    request = schemas["InferRequest"]
    request["properties"].update(
        group_by=group_by,
        group_size=_count(settings.max_k, DEFAULT_GROUP_SIZE, "With group_by: products per category."),
        groups=_count(
            settings.max_k,
            DEFAULT_GROUPS,
            "With group_by: how many categories, the best first (ranked by their best product's score).",
        ),
    )
    schemas["GroupedInferResponse"] = {
        "type": "object",
        "required": ["name", "group_by", "groups"],
        "properties": {
            "name": {"type": "string"},
            "group_by": {"type": "string", "description": "The field grouped by."},
            "groups": {
                "type": "array",
                "description": "At most `groups` categories, ranked by their best product's score (ties: category "
                "name); fewer when fewer categories have a qualifying product.",
                "items": {
                    "type": "object",
                    "required": ["category", "recommendations"],
                    "properties": {
                        "category": {"type": "string", "description": "The category (a value of group_by's field)."},
                        "recommendations": {
                            "type": "array",
                            "items": _ref("Recommendation"),
                            "description": "Best first; fewer than group_size only when the category has fewer "
                            "qualifying products.",
                        },
                    },
                },
            },
        },
    }
    schemas["SimilarRequest"] = _similar_request(settings, request)
    schemas["SimilarResponse"] = {
        "type": "object",
        "required": ["id", "metric", "recommendations"],
        "properties": {
            "id": {"type": ["string", "integer"], "description": "The product asked about, as sent."},
            "metric": {"type": "string", "enum": list(METRICS)},
            "recommendations": {"type": "array", "items": _ref("Recommendation"), "description": "Best first."},
        },
    }
    schemas["IndexInfo"]["properties"]["categories"] = {
        "type": "object",
        "description": "Metadata field → category → number of products.",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
    }
    one = {"oneOf": [_ref("InferResponse"), _ref("GroupedInferResponse")]}
    infer_ok = spec["paths"]["/infer"]["post"]["responses"]["200"]
    infer_ok["content"][JSON]["schema"] = one
    infer_ok["description"] = "Recommendations, best first (grouped by category when the request has group_by)."
    spec["paths"]["/batch"]["post"]["responses"]["200"]["content"][JSON]["schema"] = {"type": "array", "items": one}
    spec["paths"].update(_similar_paths(spec, settings))


def _count(high: int, default: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": high, "default": default, "description": description}


def _similar_request(settings: Settings, infer_request: dict[str, Any]) -> dict[str, Any]:
    shared = {
        name: copy.deepcopy(infer_request["properties"][name])
        for name in ("k", "exact", "filter", "exclude", "params", *OPTION_FIELDS)
    }
    return {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": ["string", "integer"], "description": "A product id of the index (its id type)."},
            "metric": {
                "type": "string",
                "enum": list(METRICS),
                "default": "ip",
                "description": "ip: inner product with the product's stored vector (the index answers); cosine: "
                "exact scan dividing by each product's norm (the index answers when all norms are equal).",
            },
            **shared,
        },
    }


def _similar_paths(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    infer = spec["paths"]["/infer"]["post"]
    version_header = infer["responses"]["200"].get("headers", {})
    errors = {status: entry for status, entry in infer["responses"].items() if status != "200"}
    errors["404"] = _error(
        'Unknown product id: `detail` lists each with its location (`["id"]`, or `[position, "id"]` in a batch).'
    )
    errors["501"] = _error("The index stores no exact product vectors (an IVF with SQ/PQ codes and no refinement).")
    errors = dict(sorted(errors.items()))
    extra = {key: infer[key] for key in ("security",) if key in infer}
    return {
        "/similar": {
            "post": {
                "summary": "Products most similar to one product (its stored vector), excluding itself",
                "operationId": "similar",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("SimilarRequest")}}},
                "responses": {
                    "200": {
                        "description": "Similar products, best first.",
                        "content": {JSON: {"schema": _ref("SimilarResponse")}},
                        "headers": version_header,
                    },
                    **errors,
                },
                **extra,
            }
        },
        "/similar/batch": {
            "post": {
                "summary": "Similar products for many products (one response per item, in order)",
                "operationId": "similarBatch",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {"type": "array", "maxItems": settings.max_batch, "items": _ref("SimilarRequest")}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "One response per item, in order.",
                        "content": {JSON: {"schema": {"type": "array", "items": _ref("SimilarResponse")}}},
                        "headers": version_header,
                    },
                    **errors,
                },
                **extra,
            }
        },
    }
