"""POST /v1/embeddings: passthrough to OpenAI-type upstreams, base64 done here when the upstream can't.

Retries, deployments and ``models`` fallbacks apply as for chat completions (``run_candidates``)."""

from __future__ import annotations

import base64
import struct

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, UpstreamError
from gateway.pipeline.chat import passthrough_body, settle
from gateway.pipeline.inbound import admit, route_request
from gateway.pipeline.openai_usage import usage_from_body
from gateway.pipeline.relay import stream_headers
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.state import CTX, POOL, SETTINGS, UPSTREAMS
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
        if route.provider.type != "openai":
            raise InvalidRequest(
                f"model '{route.model_id}' is served by a {route.provider.type}-protocol provider; "
                "/v1/embeddings reaches OpenAI-compatible providers",
                param="model",
            )
    app = request.app

    async def serve(route: Route, target: Target) -> web.Response:
        provider = target.provider
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
