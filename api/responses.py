"""Encoding answers: JSON bytes (orjson), JSON responses, and the header naming the index version that answered."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

VERSION_HEADER = "X-Index-Version"  # the index version that answered (api/access.py adds it where missing)


def json_bytes(payload: Any) -> bytes:
    """orjson, falling back to ASCII-escaped stdlib JSON for text orjson refuses (lone surrogates a client sent)."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return json.dumps(payload, ensure_ascii=True, default=str).encode("ascii")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(payload), status_code=status, headers=headers, media_type="application/json")


def versioned(body: bytes, version: str) -> Response:
    """An encoded JSON answer naming the index version it was computed on."""
    return Response(body, media_type="application/json", headers={VERSION_HEADER: version})
