"""The first steps every inference endpoint shares: authenticate, read the body, route the model."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.auth.policy import authenticate, check_model_allowed
from gateway.codec import JSONObject, read_json
from gateway.errors import InvalidRequest
from gateway.pipeline.context import new_id
from gateway.routing.catalog import Route
from gateway.state import CATALOG, CTX, KEYCACHE, SETTINGS


async def admit(request: web.Request, endpoint: str) -> JSONObject:
    """Authenticate an inference (lr_live_) key, then read the JSON body."""
    app = request.app
    ctx = request[CTX]
    ctx.endpoint = endpoint
    ctx.key = await authenticate(request, app[KEYCACHE], "live", datetime.now(UTC))
    return await read_json(request, app[SETTINGS].server.max_body_bytes)


def route_request(request: web.Request, body: JSONObject, *, streamed: bool) -> Route:
    """Resolve the body's model, check the key may use it, and open the generation record."""
    ctx = request[CTX]
    assert ctx.key is not None
    model_name = body.get("model")
    if model_name is not None and not isinstance(model_name, str):
        raise InvalidRequest("'model' must be a string", param="model")
    route = request.app[CATALOG].resolve(model_name)
    check_model_allowed(ctx.key, route.provider.name, route.model_id)
    ctx.route = route
    ctx.streamed = streamed
    ctx.generation_id = new_id("gen-")
    headers = request.headers
    title = headers.get("X-Title") or headers.get("X-OpenRouter-Title")
    referer = headers.get("HTTP-Referer") or headers.get("Referer")
    ctx.app_title = title[:200] if title else None  # recorded, never forwarded upstream
    ctx.app_referer = referer[:500] if referer else None
    if route.provider.type != "openai":
        raise InvalidRequest(
            f"model '{route.model_id}' is served by a {route.provider.type}-protocol provider; "
            f"{request.path} reaches OpenAI-compatible providers only in this version",
            param="model",
        )
    return route
