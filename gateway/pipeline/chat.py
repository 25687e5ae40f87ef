"""POST /v1/chat/completions: authenticate, parse, route, call, relay, account, top to bottom.

To an OpenAI-type upstream the body passes through with only ``model`` rewritten and the gateway's
own routing fields removed; the response (or each stream event) goes back as the upstream's bytes,
while usage is read from them. Anthropic and Gemini upstreams are translated (pipeline.translated).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.codec import JSONObject
from gateway.errors import InvalidRequest, UpstreamError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.inbound import admit, estimate_tokens_of, route_request
from gateway.pipeline.openai_usage import StreamTap, Usage, usage_from_body, with_cost, with_estimate
from gateway.pipeline.relay import COST_HEADER, StreamTiming, relay_sse, stream_headers
from gateway.pipeline.translated import handle_translated
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.settings import ProviderSettings
from gateway.state import CTX, POOL, SETTINGS, UPSTREAMS
from gateway.upstream.call import auth_headers, open_call
from gateway.upstream.fallback import run_candidates

# Fields that steer the gateway itself and must not reach an upstream (OpenAI rejects unknown ones).
ROUTER_FIELDS = ("models", "route", "provider", "transforms", "plugins", "usage")


async def handle_chat(request: web.Request) -> web.StreamResponse:
    """Run one chat completion request end to end, falling back across its candidates."""
    body = await admit(request, "chat")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")
    await route_request(request, body, streamed=stream)
    ctx = request[CTX]
    app = request.app
    client_wants_usage = _wants_usage(body)

    async def serve(route: Route, target: Target) -> web.StreamResponse:
        if route.provider.type != "openai":
            return await handle_translated(request, ctx, body, route, stream, target.provider)
        return await _passthrough(request, ctx, body, route, target.provider, stream, client_wants_usage)

    return await run_candidates(ctx, ctx.candidates, app[UPSTREAMS], app[SETTINGS].routing, serve)


async def _passthrough(
    request: web.Request,
    ctx: RequestContext,
    body: JSONObject,
    route: Route,
    provider: ProviderSettings,
    stream: bool,
    client_wants_usage: bool,
) -> web.StreamResponse:
    """One attempt at an OpenAI-type deployment: the body passes through with the model rewritten."""
    payload = passthrough_body(body, route, add_stream_usage=stream and provider.stream_usage)
    headers = auth_headers(provider)
    session = request.app[POOL]
    if not stream:
        async with open_call(session, provider, "/chat/completions", payload, headers) as up:
            raw = await up.read()
        usage = usage_from_body(raw)
        if usage is None:  # a success the client could not parse: another candidate may answer
            name = provider.name
            raise UpstreamError(f"provider '{name}' answered with a malformed JSON body", provider=name)
        settle(ctx, route, usage)
        return web.Response(body=with_cost(raw, ctx.cost), content_type="application/json",
                            headers={**stream_headers(ctx), COST_HEADER: format(ctx.cost.normalize(), "f")})
    tap = StreamTap(
        strip_usage=not client_wants_usage,
        price=lambda usage: usage.cost(route.model),
    )
    call = open_call(session, provider, "/chat/completions", payload, headers)
    timing = StreamTiming(request.app[SETTINGS].routing.keepalive_seconds, provider.timeouts.first_token)
    try:
        return await relay_sse(request, ctx, call, tap, timing)
    finally:
        usage = tap.usage
        if ctx.cancelled or not tap.done:  # cut short: bill what was generated
            usage = with_estimate(usage, estimate_tokens_of(ctx.body_bytes), tap.fragments)
        settle(ctx, route, usage)


def passthrough_body(body: JSONObject, route: Route, *, add_stream_usage: bool) -> bytes:
    """The client's body with the upstream model id and without router fields; unknown fields kept."""
    out: dict[str, Any] = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
    out["model"] = route.upstream_model
    if add_stream_usage:
        opts = out.get("stream_options")
        out["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
    return orjson.dumps(out)


def settle(ctx: RequestContext, route: Route, usage: Usage) -> None:
    """Copy usage into the request context and price it."""
    ctx.prompt_tokens = usage.prompt_tokens
    ctx.completion_tokens = usage.completion_tokens
    ctx.total_tokens = usage.total_tokens
    if ctx.finish_reason is None:
        ctx.finish_reason = usage.finish_reason
    ctx.cost = usage.cost(route.model)


def _wants_usage(body: JSONObject) -> bool:
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") is True:
        return True
    usage = body.get("usage")  # OpenRouter's {"usage": {"include": true}}
    return isinstance(usage, dict) and usage.get("include") is True

