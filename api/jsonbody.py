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
from starlette.types import Receive, Scope

from api.errors import ApiError


class NonFinite:
    """Stands in for a NaN / Infinity / -Infinity literal so validation can report where it was."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return self.literal


class Disconnected(Exception):
    """The client went away before its body was read: there is nobody to answer."""


async def read_json(request: Request, max_bytes: int) -> Any:
    return await read_json_asgi(request.scope, request.receive, max_bytes)


async def read_json_asgi(scope: Scope, receive: Receive, max_bytes: int) -> Any:
    """The decoded JSON body of an ASGI request; ApiError 415 / 413 / 400 for what a client got wrong."""
    content_type = declared = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            declared = value
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        shown = content_type.decode("latin-1") or "none"
        raise ApiError(415, f"Content-Type must be application/json (got {shown})")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body of {int(declared)} bytes is over the limit of {max_bytes} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return decode(chunks[0] if len(chunks) == 1 else b"".join(chunks))


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
