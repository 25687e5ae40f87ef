"""The first steps every inference endpoint shares: authenticate, read the body, route the model.

A routed request's rate limits are taken when it is routed, together with its money hold, in one
operation of the shared counters: a request refused for its content before that (400, 403, 404)
consumes no limit, and one refused for money (402) none either. Endpoints that admit without routing
(token counting, the provider proxy) take their limits at admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from gateway.admission.service import Entry
from gateway.auth.policy import authenticate
from gateway.cache.records import HEADER as CACHE_HEADER
from gateway.codec import JSONObject, parse_object, read_body
from gateway.errors import RateLimited
from gateway.idempotency.records import HEADER as IDEMPOTENCY_HEADER
from gateway.pipeline.capture import Capture
from gateway.pipeline.context import RequestContext
from gateway.ratelimit.gcra import Decision, Limits
from gateway.ratelimit.limiter import Acquire
from gateway.routing.catalog import DEFAULT_PROVIDER, Route
from gateway.routing.plan import plan_routes
from gateway.settings import LimitSettings
from gateway.state import (
    ADMISSION,
    CACHE,
    CATALOG,
    CTX,
    END_USERS,
    IDEMPOTENCY,
    IDS,
    KEYCACHE,
    LIMITS_DUE,
    SETTINGS,
    UPSTREAMS,
)
from gateway.store.base import RateLimits

# Endpoints whose handlers call route_request after admitting: their limits are taken there, with the
# money. Any other endpoint's are taken at admission (so one missing here is limited, only less cheaply).
ROUTED_ENDPOINTS = frozenset({"chat", "responses", "messages", "embeddings", "gemini_generate", "gemini_embed"})


async def admit(request: web.Request, endpoint: str) -> JSONObject:
    """Authenticate an inference (lr_live_) key, read the JSON body, apply the key's rate limits."""
    return (await admit_raw(request, endpoint))[0]


async def admit_raw(request: web.Request, endpoint: str) -> tuple[JSONObject, bytes]:
    """``admit``, also returning the body's bytes (passthrough that must forward them unchanged)."""
    raw = await admit_bytes(request, endpoint)
    return parse_object(raw), raw


async def admit_bytes(request: web.Request, endpoint: str) -> bytes:
    """Authenticate an inference key, read the body (any content), apply the key's rate limits (or, for
    an endpoint that routes, note them for route_request)."""
    app = request.app
    ctx = request[CTX]
    ctx.endpoint = endpoint
    key = ctx.key = await authenticate(request, app[KEYCACHE], "live", datetime.now(UTC))
    raw = await read_body(request, app[SETTINGS].server.max_body_bytes)
    ctx.body_bytes = len(raw)
    if endpoint in ROUTED_ENDPOINTS or (endpoint == "proxy" and request.method == "POST"):
        idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
        if idempotency_key is not None:  # before any limit or money is taken: a replay takes neither
            idempotency = app[IDEMPOTENCY]
            ctx.idempotent = await idempotency.begin(request, key.hash, ctx.request_id, idempotency_key, raw)
            ctx.sent = Capture(idempotency.max_bytes)
        if endpoint in ROUTED_ENDPOINTS:
            cache = app.get(CACHE)  # opt-in (the default): nothing more for a request without its header
            if cache is not None and (cache.mode == "on" or CACHE_HEADER in request.headers):
                ctx.cache = cache.plan(request, key.tenant_id, endpoint, raw)
    limits = effective_limits(app[SETTINGS].limits, key.rate_limit)
    if not limits.active:
        return raw
    if endpoint in ROUTED_ENDPOINTS:
        request[LIMITS_DUE] = limits
        return raw
    tokens = estimate_tokens(raw)
    check_limits(ctx, await app[ADMISSION].acquire(Acquire(key.hash, limits, tokens, ctx.request_id)))
    ctx.limits, ctx.token_estimate = limits, tokens
    return raw


def check_limits(ctx: RequestContext, decision: Decision) -> None:
    """Show the key's limits on the response; raise 429 if they refused (then nothing was taken)."""
    ctx.rate_headers = decision.headers()
    if not decision.allowed:
        raise RateLimited(
            f"rate limit exceeded ({decision.reason}); retry after {decision.retry_after}s",
            retry_after=decision.retry_after,
            metadata={"limit": decision.reason, "retry_after": decision.retry_after},
        )


def estimate_tokens(raw: bytes) -> int:
    """A prompt's tokens estimated from its JSON size (about four bytes a token); corrected by usage later."""
    return estimate_tokens_of(len(raw))


def estimate_tokens_of(size: int) -> int:
    return size // 4 + 1


def effective_limits(defaults: LimitSettings, own: RateLimits) -> Limits:
    """A key's own limits where it has them, the configured defaults elsewhere."""

    def pick(mine: int | None, default: int) -> int:
        return default if mine is None else mine

    return Limits(
        requests_per_minute=pick(own.requests_per_minute, defaults.requests_per_minute),
        requests_per_day=pick(own.requests_per_day, defaults.requests_per_day),
        tokens_per_minute=pick(own.tokens_per_minute, defaults.tokens_per_minute),
        concurrency=pick(own.concurrency, defaults.concurrency),
    )


END_USER_HEADER = "X-ARouter-User"
END_USER_MAX = 256


def end_user(header: str | None, body: Mapping[str, object]) -> str | None:
    """Who a request is for, as the client names them: the X-ARouter-User header (any API), else
    OpenAI's ``user`` or Anthropic's ``metadata.user_id``; at most 256 characters; None when unnamed."""
    named: object = header
    if not named:
        named = body.get("user")
        if not isinstance(named, str) or not named:
            metadata = body.get("metadata")
            named = metadata.get("user_id") if isinstance(metadata, dict) else None
    return named[:END_USER_MAX] if isinstance(named, str) and named else None


async def route_request(
    request: web.Request, body: JSONObject, *, streamed: bool, default_provider: str = DEFAULT_PROVIDER
) -> Route:
    """Resolve the body's model, check the key may use it and its end user may still spend, open the
    generation record, take the key's rate limits (when admit left them due) and reserve its cost, in
    one counter operation; then answer it from the response cache if it uses the cache and its answer
    is kept (``CacheHit``).
    ``default_provider`` serves bare model names the catalog does not list (see ``Catalog.resolve``)."""
    ctx = request[CTX]
    key = ctx.key
    assert key is not None
    app = request.app
    candidates = plan_routes(body, app[CATALOG], key, app[UPSTREAMS].latency, default_provider)
    # hold what the most expensive candidate could cost: whichever answers is covered
    priciest = max(candidates, key=lambda r: (r.model.prompt + r.model.completion) if r.model else -1).model
    headers = request.headers
    ctx.end_user = end_user(headers.get(END_USER_HEADER), body)
    if key.end_user_limit is not None and ctx.end_user is not None:  # a 402 here takes nothing, is not recorded
        await app[END_USERS].check(key, ctx.end_user)
    limits = request.get(LIMITS_DUE)
    entry: Entry | None = None
    if limits is not None:
        del request[LIMITS_DUE]
        take = Acquire(key.hash, limits, estimate_tokens_of(ctx.body_bytes), ctx.request_id)
        entry = await app[ADMISSION].enter(key, take, priciest, body, ctx.body_bytes)
        check_limits(ctx, entry.decision)  # a 429 is not recorded, as when limits are taken at admission
    route = candidates[0]
    ctx.route = route
    ctx.candidates = candidates
    ctx.streamed = streamed
    ctx.generation_id = app[IDS].ordered("gen-")
    title = headers.get("X-Title") or headers.get("X-OpenRouter-Title")
    referer = headers.get("HTTP-Referer") or headers.get("Referer")
    ctx.app_title = title[:200] if title else None  # recorded, never forwarded upstream
    ctx.app_referer = referer[:500] if referer else None
    if entry is None:
        ctx.hold = await app[ADMISSION].reserve(key, priciest, body, ctx.body_bytes, ctx.request_id)
    else:
        if entry.refusal is not None:
            raise entry.refusal  # nothing was taken: neither money nor limits
        ctx.limits, ctx.token_estimate = limits, estimate_tokens_of(ctx.body_bytes)
        ctx.hold = entry.hold
    ctx.billed = True
    if ctx.cache is not None:  # admitted and routed: a kept answer may serve it (raises CacheHit)
        await app[CACHE].lookup(ctx, ctx.cache, streamed=streamed)
    return route
