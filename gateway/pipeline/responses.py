"""POST /v1/responses: OpenAI's Responses API in front of every provider, stateless.

The body is parsed into the canonical ``ChatRequest`` (``protocols.openai_responses``), routed like
a chat request (``model``, ``models[]`` fallbacks, the key's allow-lists, limits and money), and each
candidate's provider adapter builds its own request from it (an OpenAI-type provider gets a chat
completion); the answer is rendered as a ``response`` object, or its stream as the Responses API's
typed events (``response.created`` … ``response.completed``), held back until the first content
like the translated chat stream. Nothing is stored: ``previous_response_id``, ``store: true`` and
``background`` are refused (400). Errors before the first byte use the OpenAI envelope; after it,
the stream ends with ``response.failed``.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.pipeline.inbound import admit, route_request
from gateway.pipeline.translated import pricer, translate, translated_response, translated_stream
from gateway.protocols.openai_responses.parse import parse_responses_request
from gateway.protocols.openai_responses.render import render_response_bytes
from gateway.protocols.openai_responses.stream import ResponsesStreamEncoder
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.state import CTX, SETTINGS, UPSTREAMS
from gateway.upstream.fallback import run_candidates


async def handle_responses(request: web.Request) -> web.StreamResponse:
    """Run one Responses API request end to end, falling back across its candidates."""
    body = await admit(request, "responses")
    req = parse_responses_request(body)  # a 400 here takes no limit and no money
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")
    await route_request(request, body, streamed=stream)
    ctx = request[CTX]
    response_id = f"resp_{ctx.generation_id}"
    created_at = int(time.time())

    async def serve(route: Route, target: Target) -> web.StreamResponse:
        t = translate(request, ctx, req, route, target.provider)
        if not stream:
            resp = await translated_response(request, ctx, route, t)
            data = render_response_bytes(resp, id=response_id, created_at=created_at, request=body,
                                         price=pricer(route))
            return web.Response(body=data, content_type="application/json", headers=t.headers)
        encoder = ResponsesStreamEncoder(id=response_id, created_at=created_at, model=route.model_id,
                                         provider=t.provider.name, request=body, price=pricer(route))
        return await translated_stream(request, ctx, route, t, encoder)

    return await run_candidates(ctx, ctx.candidates, request.app[UPSTREAMS], request.app[SETTINGS].routing, serve)
