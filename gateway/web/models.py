"""GET /v1/models and /v1/models/{model}: the catalog in OpenAI's list shape, with prices and context."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.auth.policy import authenticate, model_allowed
from gateway.codec import json_response
from gateway.errors import NotFound
from gateway.settings import ModelSettings
from gateway.state import CATALOG, CTX, KEYCACHE
from gateway.store.base import ApiKey

_MILLION = Decimal(1_000_000)


def model_object(model: ModelSettings) -> dict[str, Any]:
    """One catalog entry; prices are USD per token as decimal strings (OpenRouter's convention)."""
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "name": model.name,
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "aliases": list(model.aliases),
        "kind": model.kind,
        "pricing": {
            "prompt": format((model.prompt / _MILLION).normalize(), "f"),
            "completion": format((model.completion / _MILLION).normalize(), "f"),
        },
    }


def visible(key: ApiKey, model: ModelSettings) -> bool:
    """Whether a key's allow-lists admit a model, so keys see only what they may call."""
    if key.allowed_providers is not None and model.provider not in key.allowed_providers:
        return False
    return key.allowed_models is None or model_allowed(key.allowed_models, model.id)


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models."""
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    data = [model_object(m) for m in request.app[CATALOG].models() if visible(key, m)]
    return json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model by id or alias."""
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    name = request.match_info["model"]
    route = request.app[CATALOG].resolve(name)
    if route.model is None or not visible(key, route.model):
        raise NotFound(f"model '{name}' is not in the catalog")
    return json_response(model_object(route.model))
