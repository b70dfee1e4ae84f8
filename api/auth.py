"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys come from RECSYS_API_KEYS / RECSYS_ADMIN_KEYS (comma-separated) and RECSYS_API_KEYS_FILE /
RECSYS_ADMIN_KEYS_FILE (one key per line, ``#`` comments; re-read when the file changes, so keys rotate without a
restart). Several keys are valid at once. No key configured at all: authentication is off (development). Any key
configured: every endpoint except the open ones needs a valid key (an admin key also works), and /admin/* needs an
admin key (403 for a valid non-admin key). A presented key is hashed and compared with `hmac.compare_digest` to the
hash of every configured key, always all of them; keys are never logged nor echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.responses import json_response
from api.settings import Settings, SettingsError

if TYPE_CHECKING:  # the supervisor imports this module to check key files: not prometheus, faiss or numpy
    from api.metrics import Metrics

LOG = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
ADMIN_PREFIX = "/admin/"
FILE_CHECK_SECONDS = 1.0  # a keys file's mtime is looked at no more often than this
REALM = 'Bearer realm="recsys"'


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(text: str, separator: str) -> list[str]:
    keys = []
    for part in text.split(separator):
        key = part.split("#", 1)[0].strip() if separator == "\n" else part.strip()
        if key:
            keys.append(key)
    return keys


class KeySet:
    """Inline keys plus the keys of an optional file, re-read when its modification time or size changes."""

    def __init__(self, inline: str, file: str, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.inline = [_digest(key) for key in parse_keys(inline, ",")]
        self.path = Path(file) if file else None
        self.clock = clock
        self.from_file: list[bytes] = []
        self.stamp: tuple[int, int] | None = None
        self.checked_at = float("-inf")
        if self.path is not None:
            self._reload(strict=True)

    @property
    def configured(self) -> bool:
        return bool(self.inline) or self.path is not None

    def _reload(self, strict: bool) -> None:
        assert self.path is not None
        self.checked_at = self.clock()
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self.stamp:
                return
            keys = parse_keys(self.path.read_text(encoding="utf-8"), "\n")
        except (OSError, UnicodeDecodeError) as exc:
            if strict:
                raise SettingsError(f"{self.what} file {self.path}: cannot read it ({exc})") from None
            LOG.warning(
                "%s file %s: cannot read it (%s); keeping the %d keys read before",
                self.what,
                self.path,
                exc,
                len(self.from_file),
            )
            return
        self.from_file = [_digest(key) for key in keys]
        self.stamp = stamp
        LOG.info("%s file %s: %d keys", self.what, self.path, len(self.from_file))

    def digests(self) -> list[bytes]:
        if self.path is not None and self.clock() - self.checked_at >= FILE_CHECK_SECONDS:
            self._reload(strict=False)
        return self.inline + self.from_file

    def matches(self, digest: bytes) -> bool:
        found = False
        for known in self.digests():  # no early exit: the time taken does not depend on which key matched
            found |= hmac.compare_digest(digest, known)
        return found


def presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, users: KeySet, admins: KeySet, metrics: Metrics) -> None:
        self.app = app
        self.users = users
        self.admins = admins
        self.metrics = metrics
        self.enabled = users.configured or admins.configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.enabled or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(Headers(scope=scope))
        if key is None:
            await self._refuse(
                scope,
                receive,
                send,
                401,
                "missing",
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            )
            return
        digest = _digest(key)
        is_admin = self.admins.matches(digest)
        is_user = self.users.matches(digest)
        if not (is_admin or is_user):
            await self._refuse(scope, receive, send, 401, "invalid", "invalid API key")
            return
        if path.startswith(ADMIN_PREFIX) and not is_admin:
            await self._refuse(scope, receive, send, 403, "not_admin", "this endpoint needs an admin key")
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, reason: str, message: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        headers = {"WWW-Authenticate": REALM + (', error="invalid_token"' if reason == "invalid" else "")}
        await json_response({"detail": message}, status, headers if status == 401 else None)(scope, receive, send)


def key_sets(settings: Settings) -> tuple[KeySet, KeySet]:
    """(user keys, admin keys); raises SettingsError when a keys file cannot be read."""
    users = KeySet(settings.api_keys, settings.api_keys_file, "RECSYS_API_KEYS_FILE")
    admins = KeySet(settings.admin_keys, settings.admin_keys_file, "RECSYS_ADMIN_KEYS_FILE")
    return users, admins
