"""The SSE relay: upstream bytes to the client, cut at event boundaries, never re-encoded.

Events pass through as the upstream's bytes (the same objects when a read ends on an event
boundary); the tap reads usage from the few events that carry it. The response starts with the
first upstream event (see ``downstream``): errors before it propagate as ordinary HTTP errors (and
may fall back to another candidate); after it, the stream ends with an in-band error chunk and
``[DONE]``, never silently truncated. A client that goes away closes the upstream connection.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import orjson
from aiohttp import web

from gateway.cache.records import HEADER as CACHE_HEADER
from gateway.errors import GatewayError, UpstreamError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.downstream import Downstream
from gateway.pipeline.openai_usage import StreamTap
from gateway.sse import EventCutter
from gateway.upstream.http1 import UpstreamResponse

COST_HEADER = "X-ARouter-Cost"  # USD, on JSON responses (a stream's cost is in its usage chunk)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def relay_sse(
    request: web.Request,
    ctx: RequestContext,
    call: AbstractAsyncContextManager[UpstreamResponse],
    tap: StreamTap,
    timing: StreamTiming,
) -> web.StreamResponse:
    """Relay an OpenAI-format SSE stream from ``call`` to the client.

    Raises UpstreamError only before anything reached the client (so the caller may fall back).
    """
    down = Downstream(request, ctx, {**SSE_HEADERS, **stream_headers(ctx)}, timing.keepalive)
    try:
        async with call as upstream:
            cutter = EventCutter()
            block = await down.first_block(upstream, cutter, timing.first_token)
            if block:
                ctx.ttft = ctx.elapsed()
                block = tap.inspect(block, cutter.separator)
                if not await _forward(down, upstream, tap, block):
                    return _response(down)
            if not down.gone:
                async for chunk in upstream:
                    out = cutter.feed(chunk)
                    if not out:
                        continue
                    out = tap.inspect(out, cutter.separator)
                    if not await _forward(down, upstream, tap, out):
                        break
    except UpstreamError as err:
        if not down.committed:
            raise
        await _end_with_error(down, ctx, err)
        return _response(down)
    finally:
        await down.close()
    if not tap.done and not down.gone:
        name = ctx.route.provider.name if ctx.route else "upstream"
        await _end_with_error(down, ctx, UpstreamError(f"provider '{name}' ended the stream early", provider=name))
    return _response(down)


async def _forward(down: Downstream, upstream: UpstreamResponse, tap: StreamTap, data: bytes) -> bool:
    """Write relayed bytes; the last ones (the upstream finished with [DONE]) go out together with
    the end of the response. False once the client has gone."""
    if upstream.complete and tap.done:
        return await down.write_last(data)
    return not data or await down.write(data)


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How long to wait before committing with a keep-alive, and for the first event at all."""

    keepalive: float
    first_token: float


def _response(down: Downstream) -> web.StreamResponse:
    assert down.resp is not None or down.gone
    return down.resp if down.resp is not None else web.StreamResponse()


def stream_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"X-Request-Id": ctx.request_id, "X-Generation-Id": ctx.generation_id or "", **ctx.rate_headers}
    if ctx.route is not None:
        headers["X-ARouter-Provider"] = ctx.route.provider.name
        headers["X-ARouter-Model"] = ctx.route.model_id
    if ctx.cache_status is not None:
        headers[CACHE_HEADER] = ctx.cache_status
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


async def _end_with_error(down: Downstream, ctx: RequestContext, err: GatewayError) -> None:
    ctx.finish_reason = "error"
    ctx.upstream_error = type(err).__name__
    await down.write(error_chunk(ctx, err))
