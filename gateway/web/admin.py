"""Management API: /api/v1/keys (lr_mgmt_ keys), /api/v1/key and /v1/key (the calling key), generations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from aiohttp import web

from gateway.auth.apikey import new_key
from gateway.auth.policy import authenticate, model_allowed
from gateway.codec import json_response, money, read_json
from gateway.errors import Forbidden, InvalidRequest, NotFound
from gateway.pipeline.inbound import effective_limits
from gateway.settings import Settings
from gateway.state import BILLING, CTX, KEYCACHE, SETTINGS, STORE
from gateway.store.base import ApiKey, Generation, KeyPatch, KeyUsage, LimitReset, RateLimits
from gateway.web.query import bool_param, int_param, utc_time

_MAX_LIMIT = Decimal("1000000000")
_CREATE_FIELDS = frozenset({
    "name", "allowed_providers", "allowed_models", "limit", "limit_reset", "expires_at", "rate_limit",
    "end_user_limit", "end_user_limit_reset",
})
_RATE_FIELDS = ("requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrency")
_PATCH_FIELDS = _CREATE_FIELDS | {"disabled"}


async def create_key(request: web.Request) -> web.Response:
    """POST /api/v1/keys: a new lr_live_ key in the caller's tenant; the secret is shown only here."""
    mgmt = await _management_key(request)
    body = await read_json(request, request.app[SETTINGS].server.max_body_bytes)
    _only(body, _CREATE_FIELDS)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidRequest("'name' is required: a string of 1 to 200 characters", param="name")
    now = datetime.now(UTC)
    made = new_key("live")
    key = ApiKey(
        hash=made.hash,
        tenant_id=mgmt.tenant_id,
        kind="live",
        name=name.strip(),
        label=made.label,
        disabled=False,
        limit=_limit(body.get("limit")),
        limit_reset=_limit_reset(body.get("limit_reset")),
        allowed_providers=_within_providers(mgmt, _providers(request, body.get("allowed_providers"))),
        allowed_models=_within_models(mgmt, _models(body.get("allowed_models"))),
        expires_at=_expires_at(body.get("expires_at")),
        created_at=now,
        updated_at=now,
        rate_limit=_rate_limit(body.get("rate_limit"), RateLimits()),
        end_user_limit=_limit(body.get("end_user_limit"), "end_user_limit"),
        end_user_limit_reset=_limit_reset(body.get("end_user_limit_reset"), "end_user_limit_reset"),
    )
    store = request.app[STORE]
    await store.insert_key(key)
    usage = KeyUsage(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    return json_response({"data": key_object(key, usage, request.app[SETTINGS]), "key": made.secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    """GET /api/v1/keys?offset=&page_size=&include_disabled=: the tenant's inference keys, oldest first."""
    mgmt = await _management_key(request)
    q = request.query
    offset = int_param(q, "offset", 0, 0, 10**9)
    page_size = int_param(q, "page_size", 100, 1, 500)
    include_disabled = bool_param(q, "include_disabled", False)
    store = request.app[STORE]
    keys = await store.list_keys(
        mgmt.tenant_id, kind="live", offset=offset, limit=page_size, include_disabled=include_disabled
    )
    now = datetime.now(UTC)
    data = [key_object(k, await store.key_usage(k.hash, now), request.app[SETTINGS]) for k in keys]
    return json_response({"data": data})


async def get_key(request: web.Request) -> web.Response:
    """GET /api/v1/keys/{hash}."""
    mgmt = await _management_key(request)
    key = await _tenant_key(request, mgmt.tenant_id)
    usage = await request.app[STORE].key_usage(key.hash, datetime.now(UTC))
    return json_response({"data": key_object(key, usage, request.app[SETTINGS])})


async def update_key(request: web.Request) -> web.Response:
    """PATCH /api/v1/keys/{hash}: change name, disabled, limit, limit_reset, end_user_limit,
    end_user_limit_reset, allow-lists, rate limits, expiry."""
    mgmt = await _management_key(request)
    body = await read_json(request, request.app[SETTINGS].server.max_body_bytes)
    _only(body, _PATCH_FIELDS)
    before = await _tenant_key(request, mgmt.tenant_id)  # before any change: never a management key
    fields: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidRequest("'name' must be a string of 1 to 200 characters", param="name")
        fields["name"] = name.strip()
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise InvalidRequest("'disabled' must be true or false", param="disabled")
        fields["disabled"] = body["disabled"]
    if "limit" in body:
        fields["limit"] = _limit(body["limit"])
    if "limit_reset" in body:
        fields["limit_reset"] = _limit_reset(body["limit_reset"])
    if "end_user_limit" in body:
        fields["end_user_limit"] = _limit(body["end_user_limit"], "end_user_limit")
    if "end_user_limit_reset" in body:
        fields["end_user_limit_reset"] = _limit_reset(body["end_user_limit_reset"], "end_user_limit_reset")
    if "allowed_providers" in body:
        fields["allowed_providers"] = _within_providers(mgmt, _providers(request, body["allowed_providers"]))
    if "allowed_models" in body:
        fields["allowed_models"] = _within_models(mgmt, _models(body["allowed_models"]))
    if "rate_limit" in body:
        fields["rate_limit"] = _rate_limit(body["rate_limit"], before.rate_limit)
    if "expires_at" in body:
        fields["expires_at"] = _expires_at(body["expires_at"])
    store = request.app[STORE]
    now = datetime.now(UTC)
    key = await store.update_key(mgmt.tenant_id, before.hash, KeyPatch(**fields), now)
    if key is None:  # deleted meanwhile
        raise NotFound("no such key")
    request.app[KEYCACHE].evict((key.hash,))
    if before.limit is None and key.limit is not None:
        # A key without a limit may not have had its spend counted (the counters count it when the
        # key has a limit, or when balances are prepaid): what they hold for it is read again from
        # the ledger. A key that had a limit keeps its counters, which also count spend the ledger
        # does not have yet; a new reset period only picks another of the windows they keep.
        await request.app[BILLING].accounts.forget_key(key.tenant_id, key.hash)
    return json_response({"data": key_object(key, await store.key_usage(key.hash, now), request.app[SETTINGS])})


async def delete_key(request: web.Request) -> web.Response:
    """DELETE /api/v1/keys/{hash}."""
    mgmt = await _management_key(request)
    key = await _tenant_key(request, mgmt.tenant_id)
    if not await request.app[STORE].delete_key(mgmt.tenant_id, key.hash):
        raise NotFound("no such key")
    request.app[KEYCACHE].evict((key.hash,))
    return json_response({"data": {"deleted": True}})


async def current_key(request: web.Request) -> web.Response:
    """GET /api/v1/key and /v1/key: the calling key (either kind)."""
    key = await authenticate(request, request.app[KEYCACHE], None, datetime.now(UTC))
    request[CTX].key = key
    usage = await request.app[STORE].key_usage(key.hash, datetime.now(UTC))
    data = key_object(key, usage, request.app[SETTINGS])
    data["is_management_key"] = key.kind == "mgmt"
    data["is_free_tier"] = False
    return json_response({"data": data})


async def get_generation(request: web.Request) -> web.Response:
    """GET /api/v1/generation?id=: one finished request of the caller's tenant (live keys: their own)."""
    key = await authenticate(request, request.app[KEYCACHE], None, datetime.now(UTC))
    gen_id = request.query.get("id", "")
    if not gen_id:
        raise InvalidRequest("query parameter 'id' is required", param="id")
    gen = await request.app[STORE].get_generation(key.tenant_id, gen_id)
    if gen is None or (key.kind == "live" and gen.key_hash != key.hash):
        raise NotFound(f"no generation '{gen_id}' (rows are written within a second of the response)")
    return json_response({"data": generation_object(gen)})


def key_object(key: ApiKey, usage: KeyUsage, settings: Settings) -> dict[str, Any]:
    """The wire form of a key; money as exact JSON numbers; rate_limit as in force (defaults filled in)."""
    window = {"daily": usage.daily, "weekly": usage.weekly, "monthly": usage.monthly}.get(
        key.limit_reset or "", usage.total
    )
    remaining = None if key.limit is None else max(key.limit - window, Decimal(0))
    return {
        "hash": key.hash,
        "name": key.name,
        "label": key.label,
        "key_type": "management" if key.kind == "mgmt" else "regular",
        "disabled": key.disabled,
        "limit": None if key.limit is None else money(key.limit),
        "limit_remaining": None if remaining is None else money(remaining),
        "limit_reset": key.limit_reset,
        "end_user_limit": None if key.end_user_limit is None else money(key.end_user_limit),
        "end_user_limit_reset": key.end_user_limit_reset,
        "allowed_providers": None if key.allowed_providers is None else list(key.allowed_providers),
        "allowed_models": None if key.allowed_models is None else list(key.allowed_models),
        "usage": money(usage.total),
        "usage_daily": money(usage.daily),
        "usage_weekly": money(usage.weekly),
        "usage_monthly": money(usage.monthly),
        "created_at": key.created_at,
        "updated_at": key.updated_at,
        "expires_at": key.expires_at,
        "rate_limit": asdict(effective_limits(settings.limits, key.rate_limit)),
    }


def generation_object(gen: Generation) -> dict[str, Any]:
    """The wire form of a recorded request."""
    return {
        "id": gen.id,
        "request_id": gen.request_id,
        "model": gen.model,
        "provider": gen.provider,
        "upstream_model": gen.upstream_model,
        "endpoint": gen.endpoint,
        "status": gen.status,
        "streamed": gen.streamed,
        "cancelled": gen.cancelled,
        "tokens_prompt": gen.prompt_tokens,
        "tokens_completion": gen.completion_tokens,
        "total_cost": money(gen.cost),
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.total_tokens,
            "cost": money(gen.cost),
        },
        "latency_ms": gen.latency_ms,
        "time_to_first_token_ms": gen.ttft_ms,
        "finish_reason": gen.finish_reason,
        "app_title": gen.app_title,
        "http_referer": gen.app_referer,
        "user": gen.end_user,
        "cached": gen.cached,
        "key_hash": gen.key_hash,
        "created_at": gen.created_at,
    }


async def _management_key(request: web.Request) -> ApiKey:
    key = await authenticate(request, request.app[KEYCACHE], "mgmt", datetime.now(UTC))
    request[CTX].key = key
    return key


async def _tenant_key(request: web.Request, tenant_id: str) -> ApiKey:
    key = await request.app[STORE].get_key(request.match_info["hash"])
    if key is None or key.tenant_id != tenant_id or key.kind != "live":
        raise NotFound("no such key")
    return key


def _only(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"unknown field '{name}' (allowed: {', '.join(sorted(allowed))})", param=name)


def _limit(value: Any, name: str = "limit") -> Decimal | None:
    """A USD cap from a JSON number or decimal string, 0 to _MAX_LIMIT; null is no cap."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"'{name}' must be a number of USD or null", param=name)
    try:
        limit = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequest(f"'{name}' is not a number: {value!r}", param=name) from None
    if not limit.is_finite() or limit < 0 or limit > _MAX_LIMIT:
        raise InvalidRequest(f"'{name}' must be from 0 to {_MAX_LIMIT} USD", param=name)
    return limit


def _rate_limit(value: Any, current: RateLimits) -> RateLimits:
    """Merge a rate_limit object into the key's overrides: a number sets (0 = unlimited), null resets to default."""
    if value is None:
        return RateLimits()
    if not isinstance(value, dict):
        raise InvalidRequest("'rate_limit' must be an object or null", param="rate_limit")
    merged = asdict(current)
    for name, v in value.items():
        if name not in _RATE_FIELDS:
            raise InvalidRequest(
                f"unknown field 'rate_limit.{name}' (allowed: {', '.join(_RATE_FIELDS)})", param=f"rate_limit.{name}"
            )
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10**12):
            raise InvalidRequest(
                f"'rate_limit.{name}' must be a whole number >= 0 (0 = unlimited) or null (use the default)",
                param=f"rate_limit.{name}",
            )
        merged[name] = v
    return RateLimits(**merged)


def _within_providers(mgmt: ApiKey, wanted: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A management key can only hand out what it has: a narrower or equal provider list."""
    if mgmt.allowed_providers is None:
        return wanted
    if wanted is None:
        return mgmt.allowed_providers
    outside = [p for p in wanted if p not in mgmt.allowed_providers]
    if outside:
        raise Forbidden(f"provider '{outside[0]}' is outside this management key's scope")
    return wanted


def _within_models(mgmt: ApiKey, wanted: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if mgmt.allowed_models is None:
        return wanted
    if wanted is None:
        return mgmt.allowed_models
    for pattern in wanted:
        if not model_allowed(mgmt.allowed_models, pattern):
            raise Forbidden(f"model '{pattern}' is outside this management key's scope")
    return wanted


def _limit_reset(value: Any, name: str = "limit_reset") -> LimitReset | None:
    """A cap's window; "never" and null are both stored as None (the key's lifetime)."""
    if value is None or value == "never":
        return None
    if value not in ("daily", "weekly", "monthly"):
        raise InvalidRequest(f"'{name}' must be daily, weekly, monthly, never or null", param=name)
    return cast(LimitReset, value)


def _providers(request: web.Request, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _strings(value, "allowed_providers")
    known = request.app[SETTINGS].providers
    for name in names:
        if name not in known:
            raise InvalidRequest(
                f"unknown provider '{name}' in allowed_providers (configured: {', '.join(sorted(known))})",
                param="allowed_providers",
            )
    return names


def _models(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _strings(value, "allowed_models")


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value):
        raise InvalidRequest(f"'{name}' must be an array of strings or null", param=name)
    if len(value) > 1000:
        raise InvalidRequest(f"'{name}' may list at most 1000 entries", param=name)
    return tuple(dict.fromkeys(value))


def _expires_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("'expires_at' must be an ISO 8601 timestamp or null", param="expires_at")
    when = utc_time(value)
    if when is None:
        raise InvalidRequest(f"'expires_at' is not an ISO 8601 timestamp: {value!r}", param="expires_at")
    return when
