"""The Gemini API in front of every provider: ``/v1beta/models/{model}:{method}`` (and the same under /v1/).

Methods: ``generateContent``, ``streamGenerateContent`` (``?alt=sse``: SSE frames; without it one JSON
array, as Google serves it), ``countTokens``, ``embedContent`` and ``batchEmbedContents``. The key comes
as ``?key=`` or ``x-goog-api-key`` (any transport ``extract_key`` knows works); errors use Google's
envelope ``{"error": {"code", "message", "status"}}`` (the middleware picks it by path).

Model names: a name the catalog lists (an alias, ``google/gemini-2.5-flash``, ``openai/gpt-4.1``)
routes there; a bare name it does not list (``gemini-2.5-flash``) belongs to the Gemini provider
(``google``, else the first configured provider of type ``gemini``).

To a Gemini-type upstream the request is passed through: the body's bytes unchanged, the model in the
URL rewritten to the provider's id, the provider's ``x-goog-api-key``. A stream is always asked for
with ``alt=sse``; a client that asked without it gets the frames' JSON joined into an array by bytes.
Usage comes from ``usageMetadata``. OpenAI- and Anthropic-type upstreams are translated through the
canonical model (``parse_generate_request`` -> adapter -> ``render_generate_response_bytes`` or
``GeminiStreamEncoder``), the stream held back until its first content like chat's translated path.
After the first byte a failure ends the stream with a Google error object (an SSE frame, or the last
array element). A stream cut short (client gone, upstream died) is billed for the usage seen, else an
estimate.

countTokens is free (no reservation, no generation row): the Gemini upstream's own count for
Gemini-type models, the offline tokenizer's estimate for others. Embeddings: Gemini-type -> passthrough;
an OpenAI-type model -> ``POST {base_url}/embeddings`` with the parts' text, answered in Gemini's
shape; other provider types have no embeddings (400).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from aiohttp import web

from gateway.auth.policy import check_model_allowed
from gateway.codec import JSONObject
from gateway.core.response import Usage
from gateway.errors import GatewayError, InvalidRequest, NotFound, UpstreamError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.downstream import KEEPALIVE, Downstream
from gateway.pipeline.gemini_usage import (
    GeminiStreamTap,
    JsonArrayFramer,
    embedding_usage,
    usage_from_response,
)
from gateway.pipeline.inbound import admit_raw, estimate_tokens_of, route_request
from gateway.pipeline.openai_usage import usage_from_body
from gateway.pipeline.relay import COST_HEADER, SSE_HEADERS, stream_headers
from gateway.pipeline.translated import settle_usage, translate, translated_response, translated_stream
from gateway.protocols.anthropic_messages.count import count_request_tokens
from gateway.protocols.errors import error_body
from gateway.protocols.gemini_generate.parse import (
    model_from_path,
    parse_count_tokens_request,
    parse_generate_request,
)
from gateway.protocols.gemini_generate.render import render_count_tokens, render_generate_response_bytes
from gateway.protocols.gemini_generate.stream import CONTENT_TYPES, Framing, GeminiStreamEncoder
from gateway.providers import adapter_for
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.settings import ProviderSettings, Settings
from gateway.sse import EventCutter
from gateway.state import CATALOG, CTX, POOL, SETTINGS, TOKENIZER, UPSTREAMS
from gateway.upstream.call import auth_headers, check_json_body, open_call, open_upstream
from gateway.upstream.fallback import run_candidates
from gateway.upstream.http1 import UpstreamResponse

GEMINI_PROVIDER = "google"  # the provider bare model names belong to, when configured
METHODS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")

Method = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    """The Gemini API routes, under /v1beta (the API's version) and /v1 (google-genai 3.x's default)."""
    from gateway.web import models  # models imports this module (gemini_provider)

    r = app.router
    for version in ("/v1beta", "/v1"):
        r.add_post(version + "/models/{model:[^:]+}:{method}", handle_model_method)
    r.add_get("/v1beta/models", models.list_gemini_models)
    r.add_get("/v1beta/models/{model:.+}", models.get_gemini_model)


def gemini_provider(settings: Settings) -> str:
    """The provider bare model names route to on the Gemini API: ``google`` when configured, else the
    first provider of type gemini (else ``google``, which then reports the model as not found)."""
    if GEMINI_PROVIDER in settings.providers:
        return GEMINI_PROVIDER
    for name, provider in settings.providers.items():
        if provider.type == "gemini":
            return name
    return GEMINI_PROVIDER


async def handle_model_method(request: web.Request) -> web.StreamResponse:
    """POST /v1beta/models/{model}:{method}."""
    method = request.match_info["method"]
    handler = _HANDLERS.get(method)
    if handler is None:
        raise NotFound(f"method '{method}' is not supported; use one of " + ", ".join(METHODS))
    return await handler(request, model_from_path(request.match_info["model"]))


# ---------------------------------------------------------------------------------------------------
# generateContent / streamGenerateContent


async def _generate(request: web.Request, model: str) -> web.StreamResponse:
    return await _generate_content(request, model, stream=False)


async def _stream_generate(request: web.Request, model: str) -> web.StreamResponse:
    return await _generate_content(request, model, stream=True)


async def _generate_content(request: web.Request, model: str, *, stream: bool) -> web.StreamResponse:
    body, raw = await admit_raw(request, "gemini_generate")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("contents: must be a non-empty array", param="contents")
    framing: Framing = "sse" if request.query.get("alt") == "sse" else "json"
    await route_request(request, _routing_body(model, body), streamed=stream,
                        default_provider=gemini_provider(request.app[SETTINGS]))
    ctx = request[CTX]

    async def serve(route: Route, target: Target) -> web.StreamResponse:
        if route.provider.type == "gemini":
            return await _passthrough(request, ctx, route, target.provider, raw, stream, framing)
        return await _translated(request, ctx, body, model, route, target.provider, stream, framing)

    return await run_candidates(ctx, ctx.candidates, request.app[UPSTREAMS], request.app[SETTINGS].routing, serve)


def _routing_body(model: str, body: JSONObject) -> JSONObject:
    """What routing and the billing hold read: the model, and the output cap when the client set one."""
    out: JSONObject = {"model": model}
    gen = body.get("generationConfig", body.get("generation_config"))
    if isinstance(gen, dict):
        cap = gen.get("maxOutputTokens", gen.get("max_output_tokens"))
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            out["max_tokens"] = cap
    return out


def gemini_call(
    request: web.Request, provider: ProviderSettings, upstream_model: str, action: str, payload: bytes
) -> AbstractAsyncContextManager[UpstreamResponse]:
    """POST to ``{base_url}/v1beta/models/{upstream_model}:{action}`` with the provider's key; non-2xx
    answers mapped by the Gemini adapter (RESOURCE_EXHAUSTED is a 429)."""
    url = f"{provider.base_url.rstrip('/')}/v1beta/models/{upstream_model.removeprefix('models/')}:{action}"
    adapter = adapter_for("gemini", provider.name)
    return open_upstream(request.app[POOL], provider, "POST", url, payload, auth_headers(provider),
                         adapter.map_error)


async def _passthrough(
    request: web.Request, ctx: RequestContext, route: Route, provider: ProviderSettings, raw: bytes, stream: bool,
    framing: Framing,
) -> web.StreamResponse:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    call = gemini_call(request, provider, route.upstream_model, action, raw)
    if not stream:
        async with call as up:
            data = await up.read()
        check_json_body(data, provider.name)
        usage, finish = usage_from_response(data)
        settle_usage(ctx, route, usage, finish)
        headers = {**stream_headers(ctx), COST_HEADER: format(ctx.cost.normalize(), "f")}
        return web.Response(body=data, content_type="application/json", headers=headers)
    tap = GeminiStreamTap()
    try:
        return await _relay(request, ctx, call, tap, framing, provider)
    finally:
        usage = tap.usage
        if ctx.status == 200 and (ctx.cancelled or not tap.done):  # cut short: bill what was generated
            usage = tap.billed_usage(estimate_tokens_of(ctx.body_bytes))
        if ctx.finish_reason is None:
            ctx.finish_reason = tap.finish_reason
        settle_usage(ctx, route, usage, ctx.finish_reason)


async def _relay(
    request: web.Request,
    ctx: RequestContext,
    call: AbstractAsyncContextManager[UpstreamResponse],
    tap: GeminiStreamTap,
    framing: Framing,
    provider: ProviderSettings,
) -> web.StreamResponse:
    """Relay a Gemini SSE stream: the frames' bytes (``sse``) or their JSON as one array (``json``).

    The response starts with the first upstream frame (see ``downstream``), so failures before it
    can still fall back; keep-alive comments only in the SSE framing."""
    framer = JsonArrayFramer()
    headers = {**SSE_HEADERS, **stream_headers(ctx), "Content-Type": CONTENT_TYPES[framing]}
    down = Downstream(request, ctx, headers, request.app[SETTINGS].routing.keepalive_seconds,
                      KEEPALIVE if framing == "sse" else None)
    try:
        async with call as upstream:
            cutter = EventCutter()
            block = await down.first_block(upstream, cutter, provider.timeouts.first_token)
            blocks = upstream
            while block:
                if not await _forward(down, ctx, tap, framer, framing, block, cutter.separator):
                    return _response(down)
                block = b""
                async for chunk in blocks:
                    block = cutter.feed(chunk)
                    if block:
                        break
            rest = cutter.rest()  # a last frame without its blank line
            if rest.strip() and not await _forward(down, ctx, tap, framer, framing, rest + cutter.separator,
                                                   cutter.separator):
                return _response(down)
    except UpstreamError as err:
        if not down.committed:
            raise
        await _end_with_error(down, ctx, err, framer, framing)
        return _response(down)
    finally:
        await down.close()
    if tap.error:
        ctx.finish_reason = "error"
        ctx.upstream_error = ctx.upstream_error or "UpstreamError"
    if not tap.done:
        name = ctx.route.provider.name if ctx.route else "upstream"
        await _end_with_error(down, ctx, UpstreamError(f"provider '{name}' ended the stream early", provider=name),
                              framer, framing)
    elif framing == "json":
        await down.write(framer.close())
    return _response(down)


def _response(down: Downstream) -> web.StreamResponse:
    return down.resp if down.resp is not None else web.StreamResponse()


async def _forward(
    down: Downstream,
    ctx: RequestContext,
    tap: GeminiStreamTap,
    framer: JsonArrayFramer,
    framing: Framing,
    block: bytes,
    sep: bytes,
) -> bool:
    payloads = tap.inspect(block, sep)
    out = block if framing == "sse" else framer.feed(payloads)
    if not out:
        return True
    if ctx.ttft is None:
        ctx.ttft = ctx.elapsed()
    return await down.write(out)


async def _end_with_error(
    down: Downstream, ctx: RequestContext, err: GatewayError, framer: JsonArrayFramer, framing: Framing
) -> None:
    """End a started stream with Google's error object: a last SSE frame, or the array's last element."""
    ctx.finish_reason = "error"
    ctx.upstream_error = type(err).__name__
    payload = orjson.dumps(error_body("gemini", err)[1])
    if framing == "sse":
        await down.write(b"data: " + payload + b"\r\n\r\n")
    else:
        await down.write(framer.feed([payload]) + framer.close())


async def _translated(
    request: web.Request,
    ctx: RequestContext,
    body: JSONObject,
    model: str,
    route: Route,
    provider: ProviderSettings,
    stream: bool,
    framing: Framing,
) -> web.StreamResponse:
    """Serve a Gemini request from an OpenAI- or Anthropic-type provider through the canonical model."""
    req = parse_generate_request(body, model, stream=stream).request
    t = translate(request, ctx, req, route, provider)
    if not stream:
        resp = await translated_response(request, ctx, route, t)
        return web.Response(body=render_generate_response_bytes(resp), content_type="application/json",
                            headers=t.headers)
    encoder = GeminiStreamEncoder(framing=framing, response_id=t.call_ctx.id)
    t.headers["Content-Type"] = CONTENT_TYPES[framing]
    ping = KEEPALIVE if framing == "sse" else None  # a JSON array has no room for comments
    return await translated_stream(request, ctx, route, t, encoder, ping=ping, tail=encoder.close)


# ---------------------------------------------------------------------------------------------------
# countTokens


async def _count_tokens(request: web.Request, model: str) -> web.StreamResponse:
    """``{"totalTokens": N}``: the Gemini upstream's count, else the offline tokenizer's. Free: nothing is
    reserved or recorded (no X-Generation-Id); the rate limiter's token estimate is given back."""
    body, raw = await admit_raw(request, "gemini_count_tokens")
    ctx = request[CTX]
    assert ctx.key is not None
    route = request.app[CATALOG].resolve(model, gemini_provider(request.app[SETTINGS]))
    check_model_allowed(ctx.key, route.provider.name, route.model_id)
    ctx.route = route  # for metrics; no generation id, so no generation row
    ctx.total_tokens = 0
    headers = {"X-Request-Id": ctx.request_id, "X-ARouter-Provider": route.provider.name,
               "X-ARouter-Model": route.model_id}
    if route.provider.type == "gemini":
        inner = body.get("generateContentRequest")
        if isinstance(inner, dict) and "model" in inner:  # must name the upstream's model too
            raw = orjson.dumps({**body, "generateContentRequest": {
                **inner, "model": "models/" + route.upstream_model.removeprefix("models/")}})
        payload = raw

        async def count(route: Route, target: Target) -> web.Response:
            async with gemini_call(request, target.provider, route.upstream_model, "countTokens", payload) as up:
                data = await up.read()
            return web.Response(body=data, content_type="application/json", headers=headers)

        app = request.app
        return await run_candidates(ctx, [route], app[UPSTREAMS], app[SETTINGS].routing, count, timed=False)
    req = parse_count_tokens_request(body, model).request
    tokens = count_request_tokens(req, request.app[TOKENIZER].count)
    return web.Response(body=orjson.dumps(render_count_tokens(tokens)), content_type="application/json",
                        headers=headers)


# ---------------------------------------------------------------------------------------------------
# embedContent / batchEmbedContents


async def _embed(request: web.Request, model: str) -> web.StreamResponse:
    return await _embed_content(request, model, batch=False)


async def _batch_embed(request: web.Request, model: str) -> web.StreamResponse:
    return await _embed_content(request, model, batch=True)


async def _embed_content(request: web.Request, model: str, *, batch: bool) -> web.StreamResponse:
    body, raw = await admit_raw(request, "gemini_embed")
    items = _embed_requests(body, batch)
    default = gemini_provider(request.app[SETTINGS])
    target = request.app[CATALOG].resolve(model, default)
    if target.provider.type not in ("gemini", "openai"):
        raise InvalidRequest(
            f"model '{target.model_id}' is served by a {target.provider.type}-protocol provider, which has no "
            "embeddings; embedContent reaches Gemini- and OpenAI-compatible providers",
            param="model",
        )
    if target.provider.type == "openai" and target.model is not None and target.model.kind != "embedding":
        raise InvalidRequest(f"model '{target.model_id}' is not an embedding model", param="model")
    await route_request(request, {"model": model, "max_tokens": 1}, streamed=False, default_provider=default)
    ctx = request[CTX]
    app = request.app

    async def serve(route: Route, target: Target) -> web.StreamResponse:
        provider = target.provider
        if provider.type == "gemini":
            upstream_name = "models/" + route.upstream_model.removeprefix("models/")
            payload = raw
            if batch and any(item.get("model") != upstream_name for item in items):  # each names the model too
                payload = orjson.dumps({**body, "requests": [{**item, "model": upstream_name} for item in items]})
            action = "batchEmbedContents" if batch else "embedContent"
            async with gemini_call(request, provider, route.upstream_model, action, payload) as up:
                data = await up.read()
            prompt = embedding_usage(data)
            if prompt is None:
                prompt = sum(app[TOKENIZER].count(text) for text in _texts(items, batch, strict=False))
        else:
            data, prompt = await _openai_embeddings(request, provider, route, items, batch)
        settle_usage(ctx, route, Usage(input_tokens=prompt, output_tokens=0, total_tokens=prompt), None)
        headers = {**stream_headers(ctx), COST_HEADER: format(ctx.cost.normalize(), "f")}
        return web.Response(body=data, content_type="application/json", headers=headers)

    return await run_candidates(ctx, ctx.candidates, app[UPSTREAMS], app[SETTINGS].routing, serve, timed=False)


def _embed_requests(body: JSONObject, batch: bool) -> list[dict[str, Any]]:
    """The embed requests of the body (one for embedContent), each checked to hold a content."""
    if not batch:
        items: list[Any] = [body]
    else:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: must be a non-empty array", param="requests")
        items = requests
    for i, item in enumerate(items):
        path = f"requests[{i}]" if batch else ""
        if not isinstance(item, dict):
            raise InvalidRequest(f"{path}: expected an object", param=path)
        content = item.get("content")
        where = f"{path}.content" if path else "content"
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list) or not content["parts"]:
            raise InvalidRequest(f"{where}: expected a content with at least one part", param=where)
    return items


def _texts(items: list[dict[str, Any]], batch: bool, *, strict: bool) -> list[str]:
    """Each request's text (its text parts joined by newlines); ``strict``: other parts are an error."""
    out: list[str] = []
    for i, item in enumerate(items):
        texts: list[str] = []
        for j, part in enumerate(item["content"]["parts"]):
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str):
                texts.append(text)
            elif strict:
                path = f"requests[{i}].content.parts[{j}]" if batch else f"content.parts[{j}]"
                raise InvalidRequest(f"{path}: only text parts can be embedded by this model", param=path)
        out.append("\n".join(texts))
    return out


def _dimensions(items: list[dict[str, Any]]) -> int | None:
    """The one ``outputDimensionality`` the requests ask for (OpenAI's ``dimensions`` is per call)."""
    wanted = {item.get("outputDimensionality", item.get("output_dimensionality")) for item in items}
    if len(wanted) > 1:
        raise InvalidRequest("outputDimensionality: must be the same for every request to this model",
                             param="outputDimensionality")
    value = wanted.pop()
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("outputDimensionality: expected a positive integer", param="outputDimensionality")
    return value


async def _openai_embeddings(
    request: web.Request, provider: ProviderSettings, route: Route, items: list[dict[str, Any]], batch: bool
) -> tuple[bytes, int]:
    """Embed through an OpenAI-type ``/embeddings``; the answer in Gemini's shape, and its prompt tokens."""
    payload: dict[str, Any] = {"model": route.upstream_model, "input": _texts(items, batch, strict=True),
                               "encoding_format": "float"}
    dimensions = _dimensions(items)
    if dimensions is not None:
        payload["dimensions"] = dimensions
    async with open_call(request.app[POOL], provider, "/embeddings", orjson.dumps(payload),
                         auth_headers(provider)) as up:
        raw = await up.read()
    try:
        doc = orjson.loads(raw)
        rows = sorted(doc["data"], key=lambda row: row.get("index", 0))
        vectors = [row["embedding"] for row in rows]
        if len(vectors) != len(items) or not all(isinstance(v, list) for v in vectors):
            raise ValueError
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise UpstreamError(f"provider '{provider.name}' sent an embeddings body the gateway cannot read",
                            provider=provider.name) from None
    usage = usage_from_body(raw)
    prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens is not None else 0
    if batch:
        out: dict[str, Any] = {"embeddings": [{"values": v} for v in vectors]}
    else:
        out = {"embedding": {"values": vectors[0]}}
    return orjson.dumps(out), prompt


_HANDLERS: dict[str, Method] = {
    "generateContent": _generate,
    "streamGenerateContent": _stream_generate,
    "countTokens": _count_tokens,
    "embedContent": _embed,
    "batchEmbedContents": _batch_embed,
}
