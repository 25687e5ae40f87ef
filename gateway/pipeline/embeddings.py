"""POST /v1/embeddings: passthrough to OpenAI-type upstreams, base64 done here when the upstream can't;
Gemini-type upstreams through their ``batchEmbedContents``, answered in OpenAI's shape.

Retries, deployments and ``models`` fallbacks apply as for chat completions (``run_candidates``)."""

from __future__ import annotations

import base64
import struct

import orjson
from aiohttp import web

from gateway.core.response import Usage
from gateway.errors import InvalidRequest, UpstreamError
from gateway.pipeline.chat import passthrough_body, settle
from gateway.pipeline.gemini_native import gemini_call
from gateway.pipeline.gemini_usage import embedding_usage
from gateway.pipeline.inbound import admit, route_request
from gateway.pipeline.openai_usage import usage_from_body
from gateway.pipeline.relay import stream_headers
from gateway.pipeline.translated import settle_usage
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.settings import ProviderSettings
from gateway.state import CTX, POOL, SETTINGS, TOKENIZER, UPSTREAMS
from gateway.upstream.call import auth_headers, open_call
from gateway.upstream.fallback import run_candidates


async def handle_embeddings(request: web.Request) -> web.Response:
    """Create embeddings through the routed provider."""
    body = await admit(request, "embeddings")
    inputs = body.get("input")
    if not (isinstance(inputs, str) and inputs) and not (isinstance(inputs, list) and inputs):
        raise InvalidRequest("'input' must be a non-empty string or array", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    await route_request(request, body, streamed=False)
    ctx = request[CTX]
    for route in ctx.candidates:
        if route.provider.type not in ("openai", "gemini"):
            raise InvalidRequest(
                f"model '{route.model_id}' is served by a {route.provider.type}-protocol provider; "
                "/v1/embeddings reaches OpenAI-compatible and Gemini providers",
                param="model",
            )
        if route.provider.type == "gemini" and not _texts(inputs):
            raise InvalidRequest("'input' must be text (a string or an array of strings) for a Gemini model",
                                 param="input")
    app = request.app

    async def serve(route: Route, target: Target) -> web.Response:
        provider = target.provider
        if provider.type == "gemini":
            return await _gemini_embeddings(request, route, provider, _texts(inputs), body.get("dimensions"),
                                            encoding == "base64")
        encode_here = encoding == "base64" and not provider.embeddings_base64
        payload = passthrough_body({**body, "encoding_format": "float"} if encode_here else body, route,
                                   add_stream_usage=False)
        async with open_call(app[POOL], provider, "/embeddings", payload, auth_headers(provider)) as up:
            raw = await up.read()
        usage = usage_from_body(raw)
        if usage is None:  # a success the gateway could not parse: another try may answer
            raise UpstreamError(f"provider '{provider.name}' answered with a malformed JSON body",
                                provider=provider.name)
        if encode_here:
            raw = to_base64_embeddings(raw, provider.name)
        settle(ctx, route, usage)
        return web.Response(body=raw, content_type="application/json", headers=stream_headers(ctx))

    return await run_candidates(ctx, ctx.candidates, app[UPSTREAMS], app[SETTINGS].routing, serve, timed=False)


def _texts(inputs: object) -> list[str]:
    """The input as strings (empty when it holds anything else: token arrays)."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and all(isinstance(item, str) for item in inputs):
        return list(inputs)
    return []


async def _gemini_embeddings(
    request: web.Request, route: Route, provider: ProviderSettings, texts: list[str], dimensions: object,
    base64_out: bool,
) -> web.Response:
    """One batchEmbedContents call for the texts, answered as OpenAI's ``list`` of embeddings; its
    tokens as Gemini reports them, else counted by the offline tokenizer (Gemini rarely reports them)."""
    name = "models/" + route.upstream_model.removeprefix("models/")
    extra = {"outputDimensionality": dimensions} if isinstance(dimensions, int) and not isinstance(dimensions, bool) \
        else {}
    payload = orjson.dumps({"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **extra} for t in texts]})
    async with gemini_call(request, provider, route.upstream_model, "batchEmbedContents", payload) as up:
        data = await up.read()
    try:
        vectors = [item["values"] for item in orjson.loads(data)["embeddings"]]
        if len(vectors) != len(texts) or not all(isinstance(v, list) for v in vectors):
            raise ValueError("one embedding per input")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UpstreamError(f"provider '{provider.name}' sent an embeddings body the gateway cannot read",
                            provider=provider.name) from None
    prompt = embedding_usage(data)
    if prompt is None:
        prompt = sum(request.app[TOKENIZER].count(t) for t in texts)
    ctx = request[CTX]
    settle_usage(ctx, route, Usage(input_tokens=prompt, output_tokens=0, total_tokens=prompt), None)
    doc = {"object": "list", "model": route.upstream_model.removeprefix("models/"),
           "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
           "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
    raw = orjson.dumps(doc)
    if base64_out:
        raw = to_base64_embeddings(raw, provider.name)
    return web.Response(body=raw, content_type="application/json", headers=stream_headers(ctx))


def to_base64_embeddings(raw: bytes, provider: str) -> bytes:
    """Rewrite float embeddings as base64 of little-endian float32, as OpenAI returns them."""
    try:
        doc = orjson.loads(raw)
        for item in doc["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    except (orjson.JSONDecodeError, KeyError, TypeError, struct.error):
        raise UpstreamError(f"provider '{provider}' sent an embeddings body the gateway cannot read",
                            provider=provider) from None
    return orjson.dumps(doc)
