"""Hidden products in the service: applying ``ROOT/availability.json`` (index_format/availability.py) to the served
index, following its changes in every worker, and ``POST /admin/items/hide`` / ``/admin/items/restore``.

Every worker stats the file every `POLL_SECONDS` (one syscall) and, when it changed, re-reads it and replaces the
holder's `LoadedIndex` by one whose engine carries the new hidden rows: the same reader, filter table and policy, so
the change costs one id lookup and one mask (milliseconds), with no reload. A version loaded by a swap or a restart
reads the file as it loads, and the poll catches a change made while it was loading (the rows carry the stat key
they were read at). The worker that answers an admin request applies the change before answering; the others
follow within `POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import ApiError, Problem, problem
from api.index_state import IndexHolder, LoadedIndex
from api.jsonbody import read_json
from api.metrics import Metrics
from api.responses import json_response
from api.schemas import valid_text
from api.settings import Settings
from index_format import availability
from index_format.hidden import HiddenRows, read_hidden_rows

LOG = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # a change reaches every worker within this (the issue asks for 2 s)
MAX_IDS_PER_REQUEST = 100_000


def with_hidden(loaded: LoadedIndex, hidden: HiddenRows) -> LoadedIndex:
    return replace(loaded, engine=loaded.engine.with_hidden(hidden))


class HiddenItems:
    """One per app (worker): the poller and the admin routes."""

    def __init__(self, holder: IndexHolder, settings: Settings, metrics: Metrics) -> None:
        self.holder = holder
        self.root = Path(settings.index_root)
        self.max_body_bytes = settings.max_body_bytes
        self.metrics = metrics

    def refresh(self, force: bool = False) -> bool:
        """Apply the file to the served index if it changed since its rows were read; True when applied."""
        loaded = self.holder.current
        if loaded is None:
            return False
        key = availability.stat_key(self.root)
        current = loaded.engine.hidden
        if not force and current is not None and current.key == key:
            return False
        try:
            delta = loaded.engine.delta
            rows = read_hidden_rows(loaded.reader, self.root, delta.replaced if delta is not None else None)
        except availability.AvailabilityError as exc:
            LOG.error("keeping the hidden items as they were: %s", exc)
            return False
        if self.holder.current is not loaded:  # swapped meanwhile (only possible if called from a thread)
            return False
        self.holder.current = with_hidden(loaded, rows)
        self.metrics.hidden_items.set(rows.by_file)
        LOG.info("hidden items: %d of %d rows (generation %d)", rows.by_file, rows.total, rows.generation)
        return True

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                self.refresh()
            except Exception:
                LOG.exception("availability check failed")

    def routes(self) -> list[Route]:
        return [
            Route("/admin/items/hide", self.hide, methods=["POST"]),
            Route("/admin/items/restore", self.restore, methods=["POST"]),
        ]

    async def hide(self, request: Request) -> Response:
        return await self._change(request, hide=True)

    async def restore(self, request: Request) -> Response:
        return await self._change(request, hide=False)

    async def _change(self, request: Request, hide: bool) -> Response:
        loaded = self.holder.serving()
        ids = parse_ids(await read_json(request, self.max_body_bytes), loaded.rules.id_type)
        try:
            state = await run_in_threadpool(availability.change, self.root, ids if hide else (), () if hide else ids)
        except availability.AvailabilityError as exc:
            raise ApiError(409, str(exc)) from None
        self.refresh(force=True)
        served = self.holder.serving()
        unknown = int((served.reader.rows_of_ids(list(ids)) < 0).sum())
        body = {
            "action": "hide" if hide else "restore",
            "ids": len(ids),
            "not_in_index": unknown,
            "generation": state.generation,
            "hidden": served.hidden_summary(),
        }
        return json_response(body)


def parse_ids(body: Any, id_type: str) -> list[int | str]:
    """{"ids": [...]}: integers or strings as the index's ids are; 422 listing every bad one."""
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
        raise ApiError(422, [problem(["ids"], 'expected an object {"ids": [product ids]}', "type_error")])
    extra = [problem([key], "unknown field; allowed: ids", "extra_field") for key in body if key != "ids"]
    ids = body["ids"]
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise ApiError(413, f"{len(ids)} ids is over the limit of {MAX_IDS_PER_REQUEST} per request")
    problems: list[Problem] = list(extra)
    for position, value in enumerate(ids):
        if id_type == "str" and (not isinstance(value, str) or not valid_text(value)):
            problems.append(
                problem(["ids", position], "expected a string id (this index has string ids)", "type_error")
            )
        elif id_type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            message = "expected an integer id (this index has integer ids)"
            problems.append(problem(["ids", position], message, "type_error"))
    if problems:
        raise ApiError(422, problems[:100])
    return list(ids)
