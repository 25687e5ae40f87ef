"""Chat completions to a non-OpenAI upstream (Anthropic, Gemini): parse, translate, call, translate back.

The client's OpenAI body is parsed into the canonical ``ChatRequest``, the provider's adapter builds
the upstream request, and the answer (or each stream event) is decoded into canonical events and
rendered as OpenAI ``chat.completion`` JSON or ``chat.completion.chunk`` SSE. Errors before the first
byte reach the client as ordinary HTTP errors (the adapter maps the provider's status and body);
after it, the stream ends with an error chunk and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict

from gateway.billing.pricing import request_cost
from gateway.codec import JSONObject
from gateway.core.assemble import StreamAssembler
from gateway.core.events import (
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
)
from gateway.core.request import ChatRequest
from gateway.core.response import ChatResponse, Usage
from gateway.errors import GatewayError, UpstreamError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.downstream import KEEPALIVE, Downstream
from gateway.pipeline.inbound import estimate_tokens_of
from gateway.pipeline.relay import COST_HEADER, SSE_HEADERS, StreamTiming, stream_headers
from gateway.protocols.openai_chat.parse import parse_chat_request
from gateway.protocols.openai_chat.render import render_chat_completion_bytes
from gateway.protocols.openai_chat.stream import OpenAIStreamEncoder
from gateway.providers import adapter_for
from gateway.providers.base import BuildParams, CallContext, ProviderAdapter, StreamDecoder, UpstreamRequest
from gateway.routing.catalog import Route
from gateway.settings import ProviderSettings
from gateway.sse import EventCutter, event_fields, iter_events
from gateway.state import METRICS, POOL, SETTINGS
from gateway.upstream.call import auth_headers, open_upstream
from gateway.upstream.http1 import UpstreamResponse
from gateway.upstream.pool import Pool

DROPPED_HEADER = "X-ARouter-Dropped-Params"
# per event: a tuple, not a `A | B` union (which builds a new object at every check)
_FRAGMENTS = (TextDelta, ReasoningDelta, ToolArgsDelta)  # about one token each
_CONTENT = (TextDelta, ReasoningDelta, ToolCallStart)  # the stream has started producing


async def handle_translated(
    request: web.Request,
    ctx: RequestContext,
    body: JSONObject,
    route: Route,
    stream: bool,
    provider: ProviderSettings | None = None,
) -> web.StreamResponse:
    """Serve one OpenAI chat request from a provider that speaks another protocol (``provider``: the
    deployment to call, by default the route's provider)."""
    req = parse_chat_request(body)  # InvalidRequest -> 400 in the OpenAI envelope (middleware)
    t = translate(request, ctx, req, route, provider or route.provider)
    if not stream:
        resp = await translated_response(request, ctx, route, t)
        return web.Response(body=render_chat_completion_bytes(resp, pricer(route)), content_type="application/json",
                            headers=t.headers)
    encoder = OpenAIStreamEncoder(
        id=t.call_ctx.id, created=t.call_ctx.created, model=route.model_id, provider=t.provider.name,
        include_usage=req.include_usage or _wants_usage(body), price=pricer(route),
    )
    return await translated_stream(request, ctx, route, t, encoder)


@dataclass(frozen=True, slots=True)
class Translation:
    """One request translated for one deployment: what to send and what the decoder needs."""

    provider: ProviderSettings
    adapter: ProviderAdapter
    upstream: UpstreamRequest
    call_ctx: CallContext
    headers: dict[str, str]  # for the client's response (dropped parameters named)


def translate(
    request: web.Request, ctx: RequestContext, req: ChatRequest, route: Route, provider: ProviderSettings
) -> Translation:
    """Build the upstream request for ``provider`` from a canonical request (any inbound protocol)."""
    adapter = adapter_for(provider.type, provider.name)
    limit = route.model.max_output_tokens if route.model is not None else None
    built = adapter.build_request(req, BuildParams(upstream_model=route.upstream_model, max_output_tokens=limit))
    headers = stream_headers(ctx)
    note_dropped(request, provider.name, built.dropped, headers)
    call_ctx = CallContext(id=ctx.generation_id or "", created=int(time.time()), model=route.model_id)
    return Translation(provider, adapter, built.request, call_ctx, headers)


async def translated_response(
    request: web.Request, ctx: RequestContext, route: Route, t: Translation
) -> ChatResponse:
    """Call the upstream once, decode its answer, price it (X-ARouter-Cost joins ``t.headers``)."""
    async with open_translated(request.app[POOL], t.provider, t.adapter, t.upstream) as up:
        raw = await up.read()
    resp = t.adapter.parse_response(raw, t.call_ctx)
    settle_usage(ctx, route, resp.usage, resp.finish.reason.value)
    t.headers[COST_HEADER] = format(ctx.cost.normalize(), "f")
    return resp


async def translated_stream(
    request: web.Request,
    ctx: RequestContext,
    route: Route,
    t: Translation,
    encoder: StreamEncoder,
    *,
    ping: bytes | None = KEEPALIVE,
    tail: Callable[[], bytes] | None = None,
) -> web.StreamResponse:
    """Relay the upstream's stream re-encoded for the client; ``tail``: bytes that close a stream the
    encoder did not end (the Gemini JSON array's ``]``)."""
    timing = StreamTiming(request.app[SETTINGS].routing.keepalive_seconds, t.provider.timeouts.first_token)
    relay = _TranslatedStream(request, ctx, t.adapter.stream_decoder(t.call_ctx), encoder, t.headers, timing, ping)
    try:
        async with open_translated(request.app[POOL], t.provider, t.adapter, t.upstream) as up:
            await relay.run(up)
        if tail is not None and relay.resp is not None and not relay.closed and not relay.finished():
            await relay.down.write(tail())
    except UpstreamError as err:
        if relay.resp is None:
            raise
        await relay.fail(err)
    finally:
        relay.settle(route)
    if relay.resp is None:
        raise UpstreamError(f"provider '{t.provider.name}' sent an empty stream", provider=t.provider.name)
    return relay.resp


class StreamEncoder(Protocol):
    """Canonical stream events -> the client protocol's SSE bytes (OpenAI chunks, Anthropic events)."""

    @property
    def done(self) -> bool: ...

    def feed(self, event: StreamEvent) -> bytes: ...


class _TranslatedStream:
    """Upstream SSE -> decoder -> encoder -> client; the response is prepared at the first content.

    Until then (see ``downstream``) it waits at most the provider's first-token timeout, and sends
    keep-alives (``ping``; None for a framing without comments) every ``keepalive`` seconds, which
    commits the response; after that, failures end the stream in-band.
    """

    def __init__(
        self,
        request: web.Request,
        ctx: RequestContext,
        decoder: StreamDecoder,
        encoder: StreamEncoder,
        headers: dict[str, str],
        timing: StreamTiming | None = None,
        ping: bytes | None = KEEPALIVE,
    ) -> None:
        self.request, self.ctx, self.decoder, self.encoder, self.headers = request, ctx, decoder, encoder, headers
        self.assembler = StreamAssembler()
        keepalive = timing.keepalive if timing is not None else 3600.0
        self.down = Downstream(request, ctx, {**SSE_HEADERS, **headers}, keepalive, ping)
        self.first_token = timing.first_token if timing is not None else 3600.0
        self.pending = bytearray()  # encoded, not yet written (held back until the first content)
        self.content = False  # the upstream produced text, reasoning or a tool call
        self.fragments = 0  # content deltas seen: the output estimate of a stream cut short

    @property
    def resp(self) -> web.StreamResponse | None:
        return self.down.resp

    def finished(self) -> bool:
        """The encoder wrote its end (a method, so type narrowing never assumes it stays false)."""
        return self.encoder.done

    @property
    def closed(self) -> bool:
        """The client went away."""
        return self.down.gone

    async def run(self, upstream: UpstreamResponse) -> None:
        cutter = EventCutter()
        reader = upstream
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_token
        try:
            while not self.content and not self.finished():  # before the first content
                block = await self.down.first_block(reader, cutter, max(0.0, deadline - loop.time()))
                if not block:
                    break
                if not await self.process(block, cutter.separator):
                    return
            if self.content and not self.finished():
                async for chunk in reader:
                    block = cutter.feed(chunk)
                    if block and not await self.process(block, cutter.separator):
                        return
                    if self.finished():
                        return
            if not self.finished() and not self.down.gone:
                await self.emit(self.decoder.close())
        finally:
            await self.down.close()

    async def process(self, block: bytes, sep: bytes) -> bool:
        events: list[StreamEvent] = []
        for event in iter_events(block, sep):
            name, data = event_fields(event)
            if data is not None:
                events.extend(self.decoder.feed(name, data))
        return not events or await self.emit(events)

    async def fail(self, err: UpstreamError) -> None:
        """The upstream connection broke after the stream started: end it with ``err``."""
        if self.closed or self.encoder.done:
            return
        events = [StreamFailure(err) if isinstance(e, StreamFailure) else e for e in self.decoder.close()]
        if not any(isinstance(e, StreamFailure) for e in events):
            events.append(StreamFailure(err))
        await self.emit(events)

    async def emit(self, events: list[StreamEvent]) -> bool:
        """Fold and encode ``events`` and write them; False once the client is gone.

        Nothing is sent until the first content (text, reasoning or a tool call) or the end of the
        stream, so an upstream that fails before producing anything gets an ordinary HTTP error.
        """
        failure: GatewayError | None = None
        for ev in events:
            self.assembler.add(ev)
            if isinstance(ev, _FRAGMENTS):
                self.fragments += 1
            if isinstance(ev, _CONTENT):
                self.content = True
            elif isinstance(ev, StreamFailure):
                failure = ev.error
            self.pending += self.encoder.feed(ev)
        if failure is not None:
            self.ctx.finish_reason = "error"
            self.ctx.upstream_error = type(failure).__name__
            if not self.down.committed and not self.content:
                raise failure
        if not self.pending or (not self.down.committed and not self.content and not self.encoder.done):
            return True
        if self.ctx.ttft is None:
            self.ctx.ttft = self.ctx.elapsed()
        out, self.pending = bytes(self.pending), bytearray()
        return await self.down.write(out)

    def settle(self, route: Route) -> None:
        """Price what was used; a stream cut short after it started (client gone, upstream failed or
        silent about usage) is billed for the usage seen, the gaps estimated (the prompt from the body
        size, the output as one token per content delta)."""
        finish = self.assembler.response().finish.reason.value if self.assembler.finished else None
        if self.ctx.finish_reason is not None:
            finish = self.ctx.finish_reason
        usage = self.assembler.usage
        incomplete = usage.input_tokens is None or usage.output_tokens is None
        if self.ctx.status == 200 and (self.ctx.cancelled or not self.assembler.finished or incomplete):
            prompt = usage.input_tokens if usage.input_tokens is not None else estimate_tokens_of(self.ctx.body_bytes)
            output = max(usage.output_tokens or 0, self.fragments)
            usage = Usage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)
        settle_usage(self.ctx, route, usage, finish)


def pricer(route: Route) -> Callable[[Usage], Decimal]:
    """What a canonical usage costs at the route's prices."""
    return lambda usage: canonical_cost(route, usage)


def note_dropped(request: web.Request, provider: str, dropped: tuple[str, ...], headers: dict[str, str]) -> None:
    """Name the parameters the target could not take in a response header and count them in a metric."""
    if not dropped:
        return
    headers[DROPPED_HEADER] = ",".join(dropped)
    counter = request.app[METRICS].dropped_params
    for param in dropped:
        counter.labels(provider, param).inc()


def canonical_cost(route: Route, usage: Usage) -> Decimal:
    """What a canonical usage costs at the route's prices (cache and reasoning tokens priced apart)."""
    return request_cost(route.model, usage.input_tokens, usage.output_tokens, cache_read=usage.cache_read_tokens,
                        cache_write=usage.cache_write_tokens, reasoning=usage.reasoning_tokens)


def settle_usage(ctx: RequestContext, route: Route, usage: Usage, finish_reason: str | None) -> None:
    """Copy canonical usage into the request context and price it (as chat.settle does for passthrough)."""
    ctx.prompt_tokens = usage.input_tokens
    ctx.completion_tokens = usage.output_tokens
    ctx.total_tokens = usage.total
    if ctx.finish_reason is None:
        ctx.finish_reason = finish_reason
    ctx.cost = canonical_cost(route, usage)


def _wants_usage(body: JSONObject) -> bool:
    """OpenRouter's ``{"usage": {"include": true}}`` asks for the usage chunk too."""
    usage = body.get("usage")
    return bool(body.get("stream")) and isinstance(usage, dict) and usage.get("include") is True


def open_translated(
    pool: Pool,
    provider: ProviderSettings,
    adapter: ProviderAdapter,
    upstream: UpstreamRequest,
) -> AbstractAsyncContextManager[UpstreamResponse]:
    """Send ``upstream`` with the provider's credential; a non-2xx status is mapped by the adapter,
    which understands the provider's error bodies (Anthropic 529 overloaded, Gemini RESOURCE_EXHAUSTED)."""
    headers: CIMultiDict[str] = CIMultiDict(upstream.headers)
    headers.update(auth_headers(provider))  # credential and configured headers win
    url = provider.base_url.rstrip("/") + upstream.path
    return open_upstream(pool, provider, upstream.method, url, upstream.body, headers, adapter.map_error)
