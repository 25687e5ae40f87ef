"""GET /v1/models and /v1/models/{model}: the catalog in OpenAI's list shape, with prices and context.

GET /v1beta/models and /v1beta/models/{model} serve it in the Gemini API's shape
(``{"models": [{"name": "models/...", "displayName", "supportedGenerationMethods", ...}]}``), and so do
/v1/models and /v1/models/{model} when the caller authenticates as google-genai does (``x-goog-api-key``
or ``?key=``, no ``Authorization``): the OpenAI SDK and google-genai share those paths.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.auth.policy import authenticate, model_allowed
from gateway.codec import json_response
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.pipeline.gemini_native import gemini_provider
from gateway.protocols.errors import error_body
from gateway.settings import ModelSettings
from gateway.state import CATALOG, CTX, KEYCACHE, SETTINGS
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
    """GET /v1/models (the Gemini shape for google-genai callers)."""
    if gemini_caller(request):
        return await _in_google_envelope(list_gemini_models(request))
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    data = [model_object(m) for m in request.app[CATALOG].models() if visible(key, m)]
    return json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model by id or alias (the Gemini shape for google-genai callers)."""
    if gemini_caller(request):
        return await _in_google_envelope(get_gemini_model(request))
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    name = request.match_info["model"]
    route = request.app[CATALOG].resolve(name)
    if route.model is None or not visible(key, route.model):
        raise NotFound(f"model '{name}' is not in the catalog")
    return json_response(model_object(route.model))


GENERATE_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
EMBED_METHODS = ["embedContent", "batchEmbedContents"]
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def gemini_caller(request: web.Request) -> bool:
    """Whether the key came as ``x-goog-api-key`` or ``?key=`` (what google-genai sends), not as
    ``Authorization: Bearer`` or ``X-Api-Key`` (checked in ``extract_key``'s order)."""
    headers = request.headers
    if headers.get("Authorization", "").lower().startswith("bearer ") or headers.get("X-Api-Key"):
        return False
    return bool(headers.get("x-goog-api-key") or (request.query_string and request.query.get("key")))


async def _in_google_envelope(answer: Awaitable[web.Response]) -> web.Response:
    """Errors in Google's envelope, as a Gemini client expects on /v1/models too."""
    try:
        return await answer
    except GatewayError as err:
        status, body = error_body("gemini", err)
        return json_response(body, status=status, headers=err.headers or None)


def gemini_name(request: web.Request, model: ModelSettings) -> str:
    """The name a Gemini client calls a model by: bare (``gemini-2.5-flash``) when it routes back to
    this model as such, else the catalog id (``openai/gpt-4.1``)."""
    default = gemini_provider(request.app[SETTINGS])
    bare = model.id.removeprefix(f"{default}/")
    if bare != model.id:
        try:
            if request.app[CATALOG].resolve(bare, default).model == model:
                return bare
        except GatewayError:
            pass
    return model.id


def gemini_model_object(name: str, model: ModelSettings) -> dict[str, Any]:
    """One catalog entry as a Gemini ``Model`` (fields it does not know left out, as proto3 JSON does)."""
    out: dict[str, Any] = {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "001",
        "displayName": model.name,
        "description": f"{model.name}, served by provider '{model.provider}'",
    }
    if model.context_length:
        out["inputTokenLimit"] = model.context_length
    if model.max_output_tokens:
        out["outputTokenLimit"] = model.max_output_tokens
    out["supportedGenerationMethods"] = list(EMBED_METHODS if model.kind == "embedding" else GENERATE_METHODS)
    return out


async def list_gemini_models(request: web.Request) -> web.Response:
    """GET /v1beta/models: ``{"models": [...], "nextPageToken"?}`` (``pageSize``, ``pageToken``)."""
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    size = _page_param(request, "pageSize", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    start = _page_param(request, "pageToken", 0)
    listed = [m for m in request.app[CATALOG].models() if visible(key, m)]
    page = listed[start : start + min(size, MAX_PAGE_SIZE)]
    doc: dict[str, Any] = {"models": [gemini_model_object(gemini_name(request, m), m) for m in page]}
    if start + len(page) < len(listed):
        doc["nextPageToken"] = str(start + len(page))
    return json_response(doc)


async def get_gemini_model(request: web.Request) -> web.Response:
    """GET /v1beta/models/{model}: one model by its Gemini name, id or alias (``models/`` optional)."""
    key = await authenticate(request, request.app[KEYCACHE], "live", datetime.now(UTC))
    request[CTX].key = key
    name = request.match_info["model"].removeprefix("models/")
    route = request.app[CATALOG].resolve(name, gemini_provider(request.app[SETTINGS]))
    if route.model is None or not visible(key, route.model):
        raise NotFound(f"model '{name}' is not in the catalog")
    return json_response(gemini_model_object(gemini_name(request, route.model), route.model))


def _page_param(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name)
    if not value:
        return default
    if not value.isdigit():
        raise InvalidRequest(f"{name}: expected a non-negative integer", param=name)
    return int(value)
