"""GET /api/v1/usage: what a tenant's keys (or one key) used in a time window, grouped by model,
provider, key, endpoint or UTC day; summed from the recorded generations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.auth.policy import authenticate
from gateway.codec import json_response, money
from gateway.errors import InvalidRequest, NotFound
from gateway.state import CTX, KEYCACHE, STORE
from gateway.store import Store, usage_window_starts
from gateway.store.base import USAGE_GROUP_BY, ApiKey
from gateway.web.query import time_param

# the field a group's name is reported in
_FIELDS: dict[str, str] = {"model": "model", "provider": "provider", "key": "key_hash", "endpoint": "endpoint",
                           "day": "day", "user": "user"}
_PAGE = 500


async def usage_summary(request: web.Request) -> web.Response:
    """A management key: every key of its tenant (active, disabled or deleted), or the one named by ``key``; an
    inference key: itself. ``from`` (default: the start of the current UTC month) to ``to`` (default:
    now), ``to`` excluded."""
    caller = await authenticate(request, request.app[KEYCACHE], None, datetime.now(UTC))
    request[CTX].key = caller
    q = request.query
    group_by = q.get("group_by") or "model"
    if group_by not in USAGE_GROUP_BY:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(USAGE_GROUP_BY)}", param="group_by")
    now = datetime.now(UTC)
    start = time_param(q, "from", usage_window_starts(now)[2])
    end = time_param(q, "to", now)
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", param="from")
    store = request.app[STORE]
    keys, deleted = await _keys(store, caller, q.get("key") or None)
    groups = await store.usage_summary(list(keys), group_by, start, end)
    field = _FIELDS[group_by]
    data: list[dict[str, Any]] = []
    for g in groups:
        row: dict[str, Any] = {field: g.group}
        if group_by == "key":
            row["name"] = keys.get(g.group or "")
            row["deleted"] = g.group in deleted
        row.update(requests=g.requests, prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens,
                   cost=money(g.cost))
        data.append(row)
    return json_response({"data": data, "group_by": group_by, "from": start, "to": end})


async def _keys(store: Store, caller: ApiKey, wanted: str | None) -> tuple[dict[str, str], set[str]]:
    """The inference keys to sum, hash -> name, and which of them were deleted (their generations
    still count: a deleted key leaves its name behind)."""
    if caller.kind == "live":
        if wanted is not None and wanted != caller.hash:
            raise NotFound("no such key")
        return {caller.hash: caller.name}, set()
    if wanted is not None:
        key = await store.get_key(wanted)
        if key is not None and key.tenant_id == caller.tenant_id and key.kind == "live":
            return {key.hash: key.name}, set()
        gone = await store.get_deleted_key(wanted)
        if gone is None or gone.tenant_id != caller.tenant_id:
            raise NotFound("no such key")
        return {gone.hash: gone.name}, {gone.hash}
    keys: dict[str, str] = {}
    while True:
        page = await store.list_keys(caller.tenant_id, kind="live", offset=len(keys), limit=_PAGE,
                                     include_disabled=True)
        keys.update((k.hash, k.name) for k in page)
        if len(page) < _PAGE:
            break
    deleted = {d.hash: d.name for d in await store.list_deleted_keys(caller.tenant_id) if d.hash not in keys}
    return {**keys, **deleted}, set(deleted)
