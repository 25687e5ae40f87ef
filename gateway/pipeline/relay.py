"""The SSE relay: upstream bytes to the client, cut at event boundaries, never re-encoded.

Events pass through as the upstream's bytes (the same objects when a read ends on an event
boundary); the tap reads usage from the few events that carry it. Errors before the first byte
propagate as ordinary HTTP errors; after it, the stream ends with an in-band error chunk and
``[DONE]``, never silently truncated. A client that goes away closes the upstream connection.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager

import aiohttp
import orjson
from aiohttp import web

from gateway.errors import GatewayError, UpstreamError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.openai_usage import StreamTap
from gateway.sse import EventCutter

COST_HEADER = "X-ARouter-Cost"  # USD, on JSON responses (a stream's cost is in its usage chunk)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def relay_sse(
    request: web.Request,
    ctx: RequestContext,
    call: AbstractAsyncContextManager[aiohttp.ClientResponse],
    tap: StreamTap,
) -> web.StreamResponse:
    """Relay an OpenAI-format SSE stream from ``call`` to the client."""
    resp: web.StreamResponse | None = None
    try:
        async with call as upstream:
            resp = web.StreamResponse(headers={**SSE_HEADERS, **stream_headers(ctx)})
            await resp.prepare(request)
            ctx.status = 200
            cutter = EventCutter()
            async for chunk in upstream.content.iter_any():
                out = cutter.feed(chunk)
                if not out:
                    continue
                if ctx.ttft is None:
                    ctx.ttft = ctx.elapsed()
                out = tap.inspect(out, cutter.separator)
                if not out:
                    continue
                try:
                    await resp.write(out)
                except ConnectionResetError:
                    ctx.cancelled = True
                    return resp
    except UpstreamError as err:
        if resp is None:
            raise
        await _end_with_error(resp, ctx, err)
        return resp
    if not tap.done:
        name = ctx.route.provider.name if ctx.route else "upstream"
        await _end_with_error(resp, ctx, UpstreamError(f"provider '{name}' ended the stream early", provider=name))
    return resp


def stream_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"X-Request-Id": ctx.request_id, "X-Generation-Id": ctx.generation_id or "", **ctx.rate_headers}
    if ctx.route is not None:
        headers["X-ARouter-Provider"] = ctx.route.provider.name
        headers["X-ARouter-Model"] = ctx.route.model_id
    return headers


def error_chunk(ctx: RequestContext, err: GatewayError) -> bytes:
    """An OpenAI chunk that reports a mid-stream failure (finish_reason "error"), then [DONE]."""
    chunk = {
        "id": ctx.generation_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": ctx.route.model_id if ctx.route else None,
        "provider": ctx.route.provider.name if ctx.route else None,
        "error": {"code": err.http_status, "message": err.message},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"


async def _end_with_error(resp: web.StreamResponse, ctx: RequestContext, err: GatewayError) -> None:
    ctx.finish_reason = "error"
    ctx.upstream_error = type(err).__name__
    try:
        await resp.write(error_chunk(ctx, err))
    except ConnectionResetError:
        ctx.cancelled = True
