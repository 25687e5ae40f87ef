"""DELETE /api/v1/cache: forget the answers the response cache keeps for the tenant (management key)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.auth.policy import authenticate
from gateway.codec import json_response
from gateway.errors import NotFound
from gateway.state import CACHE, CTX, KEYCACHE


async def purge_cache(request: web.Request) -> web.Response:
    """Every kept answer of the caller's tenant is dropped: the next identical requests miss."""
    key = await authenticate(request, request.app[KEYCACHE], "mgmt", datetime.now(UTC))
    request[CTX].key = key
    cache = request.app.get(CACHE)
    if cache is None:
        raise NotFound('the response cache is off ([cache] mode = "off")')
    return json_response({"data": {"deleted": await cache.purge(key.tenant_id)}})
