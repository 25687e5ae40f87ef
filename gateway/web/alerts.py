"""GET /api/v1/alerts: the budget alerts sent for the tenant (management key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.auth.policy import authenticate
from gateway.codec import json_response
from gateway.state import CTX, KEYCACHE, STORE
from gateway.store.base import Alert
from gateway.web.query import int_param


def alert_object(alert: Alert) -> dict[str, Any]:
    """The alert as its webhook got it (``id``, ``type``, its figures, ``created_at``)."""
    doc: dict[str, Any] = orjson.loads(alert.body)
    return doc


async def list_alerts(request: web.Request) -> web.Response:
    """The tenant's alerts, newest first: ?offset= and ?limit= (1-500, default 100)."""
    key = await authenticate(request, request.app[KEYCACHE], "mgmt", datetime.now(UTC))
    request[CTX].key = key
    offset = int_param(request.query, "offset", 0, 0, 10**9)
    limit = int_param(request.query, "limit", 100, 1, 500)
    alerts = await request.app[STORE].list_alerts(key.tenant_id, offset=offset, limit=limit)
    return json_response({"data": [alert_object(a) for a in alerts]})
