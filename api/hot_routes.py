"""The innermost ASGI layer: POST /infer and POST /batch answered straight from ASGI messages.

Starlette's router, its request and response objects and its two exception middlewares cost ~20 µs per request
(benchmarks.asgi_cost: the service's middleware alone measured 32.6 µs against 13.8 µs for a bare Starlette app),
more than a tuned IVF probe's share of a 75 µs budget. The two hot routes are dispatched here by an exact path
match; everything else (other paths and methods, 405s, 404s) goes on to the Starlette app. Request ids, the access
log, metrics, API keys and overload limits sit outside this layer (api/operations.py) and apply to both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError
from api.index_state import IndexHolder
from api.jsonbody import Disconnected, read_json_asgi
from api.responses import VERSION_HEADER, json_bytes

LOG = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[tuple[bytes, str]]]  # decoded body -> (encoded answer, index version)
JSON = (b"content-type", b"application/json")
VERSION = VERSION_HEADER.lower().encode("latin-1")


class HotRoutes:
    """Parameters: app — the Starlette app for every other request; routes — path → handler (POST only);
    holder — names the served version on error answers; max_body_bytes — the body size limit (413)."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler], holder: IndexHolder, max_body_bytes: int) -> None:
        self.app = app
        self.routes = routes
        self.holder = holder
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await self.answer(handler, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def answer(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body, version = await handler(await read_json_asgi(scope, receive, self.max_body_bytes))
            status = 200
        except ApiError as error:
            status, body, version = error.status, json_bytes({"detail": error.detail}), self._served()
        except Disconnected:
            return
        except Exception:
            LOG.exception("unhandled error on %s %s", scope["method"], scope["path"])
            status, body, version = 500, json_bytes({"detail": "internal server error"}), self._served()
        headers = [JSON, (b"content-length", b"%d" % len(body))]
        if version:
            headers.append((VERSION, version.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _served(self) -> str:
        loaded = self.holder.current
        return loaded.version if loaded is not None else ""
