"""Who may call what: key kind, disabled, expiry, allowed providers and models."""

from __future__ import annotations

import hmac
from datetime import datetime
from fnmatch import fnmatchcase

from aiohttp import web

from gateway.auth.apikey import extract_key, hash_key, kind_of
from gateway.auth.keycache import KeyCache
from gateway.batches.internal import KEY_HASH_HEADER, TOKEN_HEADER
from gateway.errors import AuthError, Forbidden
from gateway.state import INTERNAL_TOKEN
from gateway.store.base import ApiKey, KeyKind


async def authenticate(request: web.Request, cache: KeyCache, kind: KeyKind | None, now: datetime) -> ApiKey:
    """The calling key, checked for kind (None: either kind), disabled and expiry.

    A gateway-internal call (the batch runner, see ``gateway.batches.internal``) names the key by its
    hash, with the deployment's internal token; it is checked like any other key from then on.
    """
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        key = await _internal_key(request, cache, token)
    else:
        secret = extract_key(request)
        if secret is None:
            raise AuthError("missing or invalid Authorization header")
        claimed = kind_of(secret)
        if claimed is None:
            raise AuthError("invalid api key")
        key = await cache.get(hash_key(secret))
    if key is None:
        raise AuthError("invalid api key")
    if key.disabled:
        raise AuthError("api key is disabled")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthError("api key has expired")
    if kind is not None and key.kind != kind:
        if kind == "mgmt":
            raise Forbidden("Only management keys can perform this operation")
        raise Forbidden("management keys cannot call inference endpoints; use an lr_live_ key")
    return key


async def _internal_key(request: web.Request, cache: KeyCache, token: str) -> ApiKey | None:
    expected = request.app.get(INTERNAL_TOKEN)
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthError("invalid internal token")
    key_hash = request.headers.get(KEY_HASH_HEADER)
    return await cache.get(key_hash) if key_hash else None


def check_model_allowed(key: ApiKey, provider: str, model_id: str) -> None:
    """Raise Forbidden unless the key's allow-lists admit this provider and model."""
    if key.allowed_providers is not None and provider not in key.allowed_providers:
        raise Forbidden(f"provider '{provider}' is not allowed for this API key")
    if key.allowed_models is not None and not model_allowed(key.allowed_models, model_id):
        raise Forbidden(f"model '{model_id}' is not allowed for this API key")


def model_allowed(patterns: tuple[str, ...], model_id: str) -> bool:
    """Whether a model id matches one of the patterns (exact, or shell-style wildcards like openai/*)."""
    return any(p == model_id or (("*" in p or "?" in p) and fnmatchcase(model_id, p)) for p in patterns)
