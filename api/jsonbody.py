"""Reading a JSON request body: content type (415), size limit (413), malformed JSON (400).

orjson decodes; it rejects the NaN / Infinity literals that Python's json module accepts, so on a decode error the
body is parsed again with the stdlib to tell malformed JSON (400) from a well-formed body holding a non-finite
literal, which validation then reports with its location (422).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request

from api.errors import ApiError


class NonFinite:
    """Stands in for a NaN / Infinity / -Infinity literal so validation can report where it was."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return self.literal


async def read_json(request: Request, max_bytes: int) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        shown = content_type or "none"
        raise ApiError(415, f"Content-Type must be application/json (got {shown})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body of {int(declared)} bytes is over the limit of {max_bytes} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return decode(b"".join(chunks))


def decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = exc
    try:
        text = body.decode("utf-8")
        # Also accepts numbers beyond float range (1e400 → inf) and lone surrogates; validation rejects both.
        return json.loads(text, parse_constant=NonFinite)
    except (ValueError, RecursionError):
        raise ApiError(400, f"malformed JSON: {first_error}") from None
