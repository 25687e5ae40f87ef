"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API in front of every provider.

To an Anthropic-type upstream the body passes through with only ``model`` rewritten (to the
provider's id), with the provider's ``x-api-key``, the client's ``anthropic-version`` (else
2023-06-01) and ``anthropic-beta``; the response (or each stream event) goes back as the upstream's
bytes while usage is read from them (``anthropic_usage``). OpenAI- and Gemini-type upstreams are
translated through the canonical model and answered in Anthropic's grammar (``render_message_bytes``,
``AnthropicStreamEncoder``), the stream held back until its first content like chat's translated path.

Model names: a name the catalog lists (``claude-sonnet-4.6`` as an alias, ``anthropic/...``,
``openai/gpt-4.1``) routes there; a bare name it does not list belongs to the ``anthropic`` provider
(on /v1/chat/completions it would belong to ``openai``).

Errors use Anthropic's envelope with ``request_id``; an upstream 529 / overloaded_error keeps the
``overloaded_error`` type (status 502). After the first byte a failure is an ``event: error`` frame,
and a passthrough stream that ends without ``message_stop`` (and without the upstream's own error
event) gets one appended: never a silently truncated stream.

Cost: Anthropic's input plus its cache reads and writes are priced at the model's prompt price (the
catalog has no cache prices) and recorded as the generation's prompt tokens; output at the completion
price. A stream cut short (client gone, upstream died) is billed for the usage seen, with the input
estimated from the body size and the output as one token per content delta when they are missing.

count_tokens is authenticated and rate limited like inference (it counts against the request limits;
its token estimate is given back) but costs nothing: no money is reserved and no generation is
recorded, so it has no ``X-Generation-Id``. Anthropic-type models get the upstream's own count;
others the offline tokenizer's estimate (never a made-up zero: an upstream failure is an error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import orjson
from aiohttp import web

from gateway.auth.policy import check_model_allowed
from gateway.codec import JSONObject, json_response
from gateway.errors import GatewayError, InvalidRequest, UpstreamError
from gateway.pipeline.anthropic_usage import AnthropicStreamTap, usage_from_message
from gateway.pipeline.chat import ROUTER_FIELDS
from gateway.pipeline.context import RequestContext
from gateway.pipeline.downstream import Downstream
from gateway.pipeline.inbound import admit, estimate_tokens_of, route_request
from gateway.pipeline.relay import COST_HEADER, SSE_HEADERS, stream_headers
from gateway.pipeline.translated import settle_usage, translate, translated_response, translated_stream
from gateway.protocols.anthropic_messages.count import count_request_tokens, render_count
from gateway.protocols.anthropic_messages.errors import render_error
from gateway.protocols.anthropic_messages.parse import parse_messages_request
from gateway.protocols.anthropic_messages.render import render_message_bytes
from gateway.protocols.anthropic_messages.stream import AnthropicStreamEncoder, error_frame, ping
from gateway.providers import adapter_for
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.settings import ProviderSettings
from gateway.sse import EventCutter
from gateway.state import CATALOG, CTX, POOL, SETTINGS, TOKENIZER, UPSTREAMS
from gateway.upstream.call import auth_headers, check_json_body, open_upstream
from gateway.upstream.fallback import run_candidates
from gateway.upstream.http1 import UpstreamResponse

DEFAULT_PROVIDER = "anthropic"  # for bare model names the catalog does not list
ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
COUNT_PATH = "/v1/messages/count_tokens"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def anthropic_errors(handler: Handler) -> Handler:
    """Render the handler's errors with the Anthropic renderer (keeps ``overloaded_error`` for an
    upstream 529, adds ``request_id``); the middleware still settles and records the request."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as err:
            ctx = request[CTX]
            if isinstance(err, UpstreamError):
                ctx.upstream_error = type(err).__name__
            status, body = render_error(err, ctx.request_id)
            return json_response(body, status=status, headers=err.headers or None)

    return wrapped


@anthropic_errors
async def handle_messages(request: web.Request) -> web.StreamResponse:
    """Run one Anthropic Messages request end to end."""
    body = await admit(request, "messages")
    requested = _check(body, for_count=False)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: expected a boolean", param="stream")
    await route_request(request, body, streamed=stream, default_provider=DEFAULT_PROVIDER)
    ctx = request[CTX]

    async def serve(route: Route, target: Target) -> web.StreamResponse:
        if route.provider.type != "anthropic":
            return await _translated(request, ctx, body, route, requested, stream, target.provider)
        return await _native(request, ctx, body, route, target.provider, stream)

    return await run_candidates(ctx, ctx.candidates, request.app[UPSTREAMS], request.app[SETTINGS].routing, serve)


async def _native(
    request: web.Request, ctx: RequestContext, body: JSONObject, route: Route, provider: ProviderSettings,
    stream: bool,
) -> web.StreamResponse:
    """One attempt at an Anthropic-type deployment: the body passes through with the model rewritten."""
    payload = _native_body(body, route)
    call = _open_anthropic(request, provider, MESSAGES_PATH, payload)
    if not stream:
        async with call as up:
            raw = await up.read()
        check_json_body(raw, provider.name)
        usage, finish = usage_from_message(raw)
        settle_usage(ctx, route, usage, finish)
        headers = {**stream_headers(ctx), COST_HEADER: format(ctx.cost.normalize(), "f")}
        return web.Response(body=raw, content_type="application/json", headers=headers)
    tap = AnthropicStreamTap()
    try:
        return await _relay(request, ctx, call, tap, provider)
    finally:
        started = ctx.status == 200  # the upstream answered 2xx: it may have charged for the prompt
        cut_short = started and (ctx.cancelled or not tap.ended)
        usage = tap.usage(estimate_tokens_of(ctx.body_bytes) if cut_short else None)
        if ctx.finish_reason is None:
            ctx.finish_reason = tap.finish_reason
        if tap.error is not None:
            ctx.upstream_error = ctx.upstream_error or "UpstreamError"
        settle_usage(ctx, route, usage, ctx.finish_reason)


@anthropic_errors
async def handle_count_tokens(request: web.Request) -> web.StreamResponse:
    """``{"input_tokens": N}`` for a Messages body: the Anthropic upstream's count, else the tokenizer's."""
    body = await admit(request, "count_tokens")
    requested = _check(body, for_count=True)
    ctx = request[CTX]
    assert ctx.key is not None
    route = request.app[CATALOG].resolve(requested, DEFAULT_PROVIDER)
    check_model_allowed(ctx.key, route.provider.name, route.model_id)
    ctx.route = route  # for metrics; no generation id, so no generation row
    ctx.total_tokens = 0  # generates nothing: the limiter gives the token estimate back
    headers = {"X-Request-Id": ctx.request_id, "X-ARouter-Provider": route.provider.name,
               "X-ARouter-Model": route.model_id}
    if route.provider.type == "anthropic":
        payload = _native_body(body, route)

        async def count(route: Route, target: Target) -> web.Response:
            async with _open_anthropic(request, target.provider, COUNT_PATH, payload) as up:
                raw = await up.read()
            return web.Response(body=raw, content_type="application/json", headers=headers)

        app = request.app
        return await run_candidates(ctx, [route], app[UPSTREAMS], app[SETTINGS].routing, count, timed=False)
    req = parse_messages_request(body, for_count=True).request
    tokens = count_request_tokens(req, request.app[TOKENIZER].count)
    return web.Response(body=orjson.dumps(render_count(tokens)), content_type="application/json", headers=headers)


def _native_body(body: JSONObject, route: Route) -> bytes:
    """The client's Messages body for an Anthropic upstream: its model's id, no gateway routing fields."""
    return orjson.dumps({**{k: v for k, v in body.items() if k not in ROUTER_FIELDS}, "model": route.upstream_model})


def _check(body: JSONObject, *, for_count: bool) -> str:
    """The checks every Messages body gets before routing (passthrough bodies are not parsed further):
    ``model`` a string, ``messages`` an array, ``max_tokens`` a positive integer (not for count_tokens)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: field required", param="model")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: field required", param="messages")
    if not for_count:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise InvalidRequest("max_tokens: field required", param="max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidRequest("max_tokens: expected a positive integer", param="max_tokens")
    return model


def _open_anthropic(
    request: web.Request, provider: ProviderSettings, path: str, payload: bytes
) -> AbstractAsyncContextManager[UpstreamResponse]:
    """POST to the Anthropic-type provider; non-2xx answers mapped by the Anthropic adapter (529 overloaded)."""
    headers: dict[str, str] = {"anthropic-version": request.headers.get("anthropic-version") or ANTHROPIC_VERSION}
    beta = request.headers.get("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    headers.update(auth_headers(provider))  # credential and configured headers win
    adapter = adapter_for(provider.type, provider.name)
    url = provider.base_url.rstrip("/") + path
    return open_upstream(request.app[POOL], provider, "POST", url, payload, headers, adapter.map_error)


async def _relay(
    request: web.Request,
    ctx: RequestContext,
    call: AbstractAsyncContextManager[UpstreamResponse],
    tap: AnthropicStreamTap,
    provider: ProviderSettings,
) -> web.StreamResponse:
    """Relay an Anthropic event stream as the upstream's bytes, cut at event boundaries; the response
    starts with the first upstream event (see ``downstream``), so earlier failures can fall back."""
    down = Downstream(request, ctx, {**SSE_HEADERS, **stream_headers(ctx)},
                      request.app[SETTINGS].routing.keepalive_seconds, ping())  # Anthropic's own keep-alive
    try:
        async with call as upstream:
            cutter = EventCutter()
            block = await down.first_block(upstream, cutter, provider.timeouts.first_token)
            blocks = upstream
            while block and not down.gone:
                if ctx.ttft is None:
                    ctx.ttft = ctx.elapsed()
                tap.inspect(block, cutter.separator)
                if not await down.write(block) or tap.ended:
                    break
                block = b""
                async for chunk in blocks:
                    block = cutter.feed(chunk)
                    if block:
                        break
    except UpstreamError as err:
        if not down.committed:
            raise
        await _end_with_error(down, ctx, err)
        return _response(down)
    finally:
        await down.close()
    if not tap.ended and not down.gone:
        name = ctx.route.provider.name if ctx.route else "upstream"
        await _end_with_error(down, ctx, UpstreamError(f"provider '{name}' ended the stream early", provider=name))
    return _response(down)


def _response(down: Downstream) -> web.StreamResponse:
    return down.resp if down.resp is not None else web.StreamResponse()


async def _end_with_error(down: Downstream, ctx: RequestContext, err: GatewayError) -> None:
    ctx.finish_reason = "error"
    ctx.upstream_error = type(err).__name__
    await down.write(error_frame(err))


async def _translated(
    request: web.Request, ctx: RequestContext, body: JSONObject, route: Route, requested: str, stream: bool,
    provider: ProviderSettings,
) -> web.StreamResponse:
    """Serve a Messages request from an OpenAI- or Gemini-type provider through the canonical model."""
    req = parse_messages_request(body).request
    t = translate(request, ctx, req, route, provider)
    stop = req.sampling.stop
    if not stream:
        resp = await translated_response(request, ctx, route, t)
        return web.Response(body=render_message_bytes(resp, model=requested, stop=stop),
                            content_type="application/json", headers=t.headers)
    encoder = AnthropicStreamEncoder(
        id=t.call_ctx.id, model=requested, stop=stop, input_tokens=estimate_tokens_of(ctx.body_bytes)
    )
    return await translated_stream(request, ctx, route, t, encoder, ping=ping())
