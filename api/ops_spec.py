"""OpenAPI pieces of the operational endpoints and errors (merged into api/openapi.py's document)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"

ERROR_TEXT = {
    401: "API keys are on and the request has no valid key (`WWW-Authenticate: Bearer`).",
    403: "A valid key that is not an admin key, on an admin endpoint.",
    409: "The new index version was refused (checksum, format, dimension...); the old one keeps serving.",
    503: "The index is not loaded yet, or this worker is at its concurrency limit (`Retry-After`).",
    504: "The request took longer than the time budget (`Retry-After`).",
}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
# Keys are optional (off unless configured): `{}` lets a request without credentials be valid.
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {}]
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def _error(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_TEXT[status],
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def ops_paths() -> dict[str, Any]:
    reload_result = {
        "type": "object",
        "required": ["pid", "outcome"],
        "properties": {
            "pid": {"type": "integer", "description": "The worker process that answered (each worker reloads)."},
            "outcome": {"type": "string", "enum": ["swapped", "unchanged", "refused"]},
            "version": {"type": ["string", "null"], "description": "Version served after the check."},
            "previous": {"type": ["string", "null"]},
            "target": {"type": ["string", "null"], "description": "Where ROOT/current pointed."},
            "error": {"type": ["string", "null"]},
            "seconds": {"type": "number"},
            "reload_interval_seconds": {"type": "number"},
        },
    }
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, merged over all worker processes",
                "operationId": "metrics",
                "security": [{}],
                "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
            }
        },
        "/admin/reload": {
            "post": {
                "summary": "Check ROOT/current now and swap to a new version if it is sound (this worker; the others "
                "follow within RECSYS_RELOAD_INTERVAL)",
                "operationId": "reload",
                "security": ADMIN_SECURITY,
                "responses": {
                    "200": {
                        "description": "Swapped, or already serving what current points at.",
                        "content": {JSON: {"schema": reload_result}},
                    },
                    "401": _error(401),
                    "403": _error(403),
                    "409": {
                        "description": ERROR_TEXT[409],
                        "content": {JSON: {"schema": reload_result}},
                    },
                },
            }
        },
        **{f"/admin/items/{action}": _items_path(action) for action in ("hide", "restore")},
    }


def _items_path(action: str) -> dict[str, Any]:
    """POST /admin/items/hide and /admin/items/restore (api/hidden_items.py)."""
    what = (
        "Hide products from every search (infer, batch, similar, group_by) without a rebuild"
        if action == "hide"
        else "Restore hidden products"
    )
    body = {
        "type": "object",
        "required": ["ids"],
        "additionalProperties": False,
        "properties": {"ids": {"type": "array", "items": {"type": ["string", "integer"]}, "maxItems": 100_000}},
    }
    answer = {
        "type": "object",
        "properties": {
            "action": {"type": "string"},
            "ids": {"type": "integer"},
            "not_in_index": {"type": "integer", "description": "Ids the served version does not hold (kept)."},
            "generation": {"type": "integer", "description": "Counts up with every change of the hidden set."},
            "hidden": {"type": "object", "description": "As in GET /index `hidden`."},
        },
    }
    return {
        "post": {
            "summary": f"{what}: this worker applies it before answering, the others within 0.5 s; it outlives "
            "swaps and restarts (ROOT/availability.json)",
            "operationId": f"items_{action}",
            "security": ADMIN_SECURITY,
            "requestBody": {"required": True, "content": {JSON: {"schema": body}}},
            "responses": {
                "200": {"description": "Applied.", "content": {JSON: {"schema": answer}}},
                "401": _error(401),
                "403": _error(403),
                "422": {
                    "description": "Not a list of ids of the index's id type.",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
    }
