"""The OpenAPI 3.1 description served at /openapi.json, written by hand (no pydantic), with the loaded index's
dimension and the configured limits filled in."""

from __future__ import annotations

from typing import Any

from api.feature_spec import add_features
from api.index_state import LoadedIndex
from api.ops_spec import ERROR_TEXT, SECURITY, SECURITY_SCHEMES, ops_paths
from api.settings import Settings

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON.",
        404: "Unknown path.",
        405: "Method not allowed.",
        413: "Body over the size limit, or more batch items than allowed.",
        415: "Content-Type is not application/json.",
        422: "Schema or value problems; `detail` lists each with its location in the body.",
        503: "The index is not loaded yet.",
        **ERROR_TEXT,
    }
    return {str(status): _json(_ref("Error"), text[status]) for status in statuses}


def openapi_spec(settings: Settings, loaded: LoadedIndex | None) -> dict[str, Any]:
    dim = loaded.rules.dim if loaded is not None else None
    vector: dict[str, Any] = {
        "type": "array",
        "items": {"type": "number"},
        "description": "The user's embedding: finite numbers (float32 range); NaN and Infinity are rejected.",
    }
    if dim is not None:
        vector.update(minItems=dim, maxItems=dim)
    params_props = {
        "efSearch": {"type": "integer", "minimum": 1, "description": "HNSW indexes: candidate list size."},
        "nprobe": {"type": "integer", "minimum": 1, "description": "IVF indexes: lists probed."},
        "k_factor": {"type": "integer", "minimum": 1, "description": "IVF-PQ indexes: re-ranking depth factor."},
    }
    if loaded is not None:
        params_props = {
            name: {**schema, "maximum": loaded.rules.param_limits[name]}
            for name, schema in params_props.items()
            if name in loaded.rules.param_limits
        }
    request = {
        "type": "object",
        "required": ["name", "vector"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "description": "Echoed back in the response."},
            "vector": vector,
            "k": {"type": "integer", "minimum": 1, "maximum": settings.max_k, "default": 10},
            "exact": {"type": "boolean", "default": False, "description": "Exhaustive search: the true top-k."},
            "filter": {
                "type": "object",
                "description": "Metadata field → allowed values (see GET /index `filter_fields`). Values of one "
                "field are alternatives; several fields must all match.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "exclude": {
                "type": "array",
                "maxItems": settings.max_exclude,
                "items": {"type": ["string", "integer"]},
                "description": "Product ids never to return (e.g. already bought); unknown ids are ignored.",
            },
            "params": {
                "type": "object",
                "additionalProperties": False,
                "properties": params_props,
                "description": "Per-request search effort for approximate indexes (see GET /index).",
            },
            "offset": {
                "type": "integer",
                "minimum": 0,
                "maximum": settings.max_window - 1,
                "default": 0,
                "description": f"Paging: skip this many best results first; offset + k is at most "
                f"{settings.max_window}.",
            },
            "score_threshold": {
                "type": "number",
                "description": "Return only products scoring at least this (fewer than k, possibly none).",
            },
            "with_metadata": {
                "type": "boolean",
                "default": False,
                "description": "Each result carries `metadata`: the product's metadata fields (see GET /index "
                "`filter_fields`), null where it has no value.",
            },
        },
    }
    problem = {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    }
    schemas = {
        "InferRequest": request,
        "Recommendation": {
            "type": "object",
            "required": ["id", "score"],
            "properties": {
                "id": {"type": ["string", "integer"]},
                "score": {"type": "number"},
                "metadata": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "null"]},
                    "description": "Only with `with_metadata: true`.",
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["name", "recommendations"],
            "properties": {
                "name": {"type": "string"},
                "recommendations": {
                    "type": "array",
                    "items": _ref("Recommendation"),
                    "description": "Best first; fewer than k only when fewer products qualify.",
                },
            },
        },
        "ValidationProblem": problem,
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {
                "detail": {"oneOf": [{"type": "string"}, {"type": "array", "items": _ref("ValidationProblem")}]}
            },
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "IndexInfo": {
            "type": "object",
            "required": ["version", "kind", "count", "dim", "built_at", "default_params", "recall_at_k"],
            "properties": {
                "version": {"type": "string"},
                "kind": {"type": "string"},
                "factory": {"type": "string"},
                "family": {"type": "string"},
                "count": {"type": "integer"},
                "dim": {"type": "integer"},
                "metric": {"type": "string"},
                "id_type": {"type": "string", "enum": ["int", "str"]},
                "built_at": {"type": "string"},
                "build_seconds": {"type": "number"},
                "faiss_version": {"type": "string"},
                "default_params": {"type": "object", "additionalProperties": {"type": "integer"}},
                "exact_method": {"type": "string"},
                "k": {"type": "integer"},
                "recall_at_k": {"type": "number", "description": "Held-out recall@k of default_params."},
                "target_recall": {"type": "number"},
                "recall_queries": {"type": ["string", "null"]},
                "filter_fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "search_params": {"type": "object"},
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                "warm_seconds": {"type": "number"},
                "live_recall": {
                    "type": "object",
                    "description": "Live recall@k of sampled ANN answers (estimate, 95% interval, samples) and the "
                    "search effort in force (api/README_API.md, Live recall).",
                },
            },
        },
    }
    version_header = {
        "X-Index-Version": {"description": "Version of the index that answered.", "schema": {"type": "string"}}
    }
    infer_ok = {**_json(_ref("InferResponse"), "Recommendations, best first."), "headers": version_header}
    batch_ok = {
        **_json({"type": "array", "items": _ref("InferResponse")}, "One response per item, in order."),
        "headers": version_header,
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "recsys retrieval API",
            "version": "1",
            "description": "Top-k maximum-inner-product product recommendations from a memory-mapped FAISS index.",
        },
        "paths": {
            "/infer": {
                "post": {
                    "summary": "Top-k products for one user vector",
                    "operationId": "infer",
                    "requestBody": {"required": True, "content": {JSON: {"schema": _ref("InferRequest")}}},
                    "responses": {"200": infer_ok, **_errors(400, 401, 405, 413, 415, 422, 503, 504)},
                }
            },
            "/batch": {
                "post": {
                    "summary": "Top-k products for many user vectors (searched together)",
                    "operationId": "batch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "array",
                                    "maxItems": settings.max_batch,
                                    "items": _ref("InferRequest"),
                                }
                            }
                        },
                    },
                    "responses": {"200": batch_ok, **_errors(400, 401, 405, 413, 415, 422, 503, 504)},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "operationId": "healthz",
                    "responses": {"200": _json(_ref("Status"), "Alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The index is loaded and warmed",
                    "operationId": "readyz",
                    "responses": {"200": _json(_ref("Status"), "Ready."), **_errors(503)},
                }
            },
            "/index": {
                "get": {
                    "summary": "The served index: version, kind, size, build time, default params, measured recall",
                    "operationId": "index",
                    "responses": {"200": _json(_ref("IndexInfo"), "Index description."), **_errors(503)},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {JSON: {}}}},
                }
            },
            **ops_paths(),
        },
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "security": SECURITY,
    }
    add_features(spec, settings, loaded)  # group_by, /similar, categories (api/feature_spec.py)
    return spec
