"""The provider proxy, ``/{provider}/{path}``: a provider's own API, passed through as bytes.

Any method and path: ``/openai/v1/chat/completions`` reaches the OpenAI upstream's
``/v1/chat/completions``, ``/anthropic/v1/messages`` Anthropic's ``/v1/messages``,
``/google/v1beta/models/gemini-2.5-flash:generateContent`` Gemini's; the path after the provider's
name is taken from the provider's host root (scheme and host of its ``base_url``). The caller's
gateway key is checked (an inference key; the key's provider and model allow-lists, rate limits and
spend apply) and replaced by the provider's credential in that provider's header; the query string
goes along without ``key``. Status, body and stream come back as the provider sent them; usage is
still read (``usage`` / ``usageMetadata``, JSON or SSE), priced when the model is in the catalog,
recorded and billed. A call is tried again only when nothing of it was taken (no connection, or
the provider's 429, 503 or 529). The gateway's own paths (/v1, /v1beta, /api, /healthz, /readyz, /metrics,
/openapi.yaml) are never taken: no provider may have those names.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.auth.policy import check_model_allowed
from gateway.errors import GatewayError, NotFound, Unavailable, UpstreamError, UpstreamUnreachable
from gateway.pipeline.context import RequestContext
from gateway.pipeline.downstream import Downstream
from gateway.pipeline.inbound import END_USER_HEADER, admit_bytes, end_user
from gateway.pipeline.relay import COST_HEADER, stream_headers
from gateway.pipeline.usage_sniff import UsageSniffer
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target
from gateway.settings import ProviderSettings
from gateway.sse import EventCutter
from gateway.state import ADMISSION, CATALOG, CTX, IDS, POOL, SETTINGS, UPSTREAMS
from gateway.upstream.call import credential_headers, open_upstream
from gateway.upstream.fallback import backoff
from gateway.upstream.http1 import UpstreamResponse

# Request headers that belong to this hop or to the gateway, never forwarded.
_DROP_REQUEST = frozenset(
    h.lower() for h in ("Host", "Authorization", "X-Api-Key", "x-goog-api-key", "Content-Length", "Connection",
                        "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "TE", "Trailer",
                        "Cookie", "X-Title", "X-OpenRouter-Title", "HTTP-Referer", "Referer", "Accept-Encoding",
                        "X-ARouter-User")
)
# Answers of a provider that did not take the call (rate limited, unavailable, Anthropic's overloaded):
# tried again like routed calls. Any other answer, 500 included, comes back once: the call may have
# been carried out (a file uploaded, a batch made), and the proxy cannot know the provider's endpoint.
NOT_TAKEN = frozenset({429, 503, 529})
# Response headers passed back to the caller.
_KEEP_RESPONSE = ("Content-Type", "Retry-After")
_GEMINI_MODEL = re.compile(r"/models/([^/:]+)")


async def handle_proxy(request: web.Request) -> web.StreamResponse:
    """Forward one request to a configured provider's own API."""
    app = request.app
    name = request.match_info["provider"]
    provider = app[SETTINGS].providers.get(name)
    if provider is None:
        raise NotFound(f"no route for {request.method} {request.path} (and no provider named '{name}')")
    raw = await admit_bytes(request, "proxy")
    ctx = request[CTX]
    assert ctx.key is not None
    body = _json_object(raw)
    route = _route(request, provider, body)
    check_model_allowed(ctx.key, provider.name, route.model_id)
    ctx.route, ctx.candidates = route, [route]
    ctx.generation_id = app[IDS].ordered("gen-")
    title = request.headers.get("X-Title")
    ctx.app_title = title[:200] if title else None
    referer = request.headers.get("HTTP-Referer")
    ctx.app_referer = referer[:500] if referer else None
    ctx.end_user = end_user(request.headers.get(END_USER_HEADER), body)
    if route.model is not None:
        ctx.hold = await app[ADMISSION].reserve(ctx.key, route.model, body, len(raw), ctx.request_id)
        ctx.billed = True
    upstreams = app[UPSTREAMS]
    deadline = time.monotonic() + app[SETTINGS].routing.retry_budget
    attempt = 0
    refused: _NotTaken | None = None  # the provider's latest refusal, passed on if no try is left
    while True:  # tried again only when nothing of the request left, or the provider said it did not take it
        try:
            target = upstreams.pick(provider)
        except Unavailable:  # every deployment is cooling down, after the refusals themselves
            if refused is None:
                raise
            return _passed_on(ctx, route, refused)
        last = attempt >= provider.retries
        try:
            return await _forward(request, ctx, route, target, raw, refusal_ends=last)
        except UpstreamUnreachable:
            upstreams.failed(target)
            if last:
                raise
        except _NotTaken as err:
            refused = err
            wait = backoff(attempt, err, provider.retry_max_wait)
            if time.monotonic() + wait > deadline:  # no time left for another try: the provider's answer
                return _passed_on(ctx, route, err)
            await asyncio.sleep(wait)
        attempt += 1


def _passed_on(ctx: RequestContext, route: Route, refused: _NotTaken) -> web.Response:
    """A refusal passed on as the provider sent it, settled like any answer without usage."""
    _settle(ctx, route, UsageSniffer())
    refused.response.headers[COST_HEADER] = format(ctx.cost.normalize(), "f")
    return refused.response


class _NotTaken(UpstreamError):
    """The provider answered that it did not take the call (429, 503, 529): ``response`` is its
    answer, passed on if no try is left; its Retry-After paces the next."""

    def __init__(self, response: web.Response, provider: str) -> None:
        retry_after = response.headers.get("Retry-After")
        super().__init__("not taken", provider=provider, upstream_status=response.status,
                         headers={"Retry-After": retry_after} if retry_after is not None else None)
        self.response = response


async def _forward(
    request: web.Request, ctx: RequestContext, route: Route, target: Target, raw: bytes, *, refusal_ends: bool
) -> web.StreamResponse:
    """One try at one deployment; its answer, as the provider sent it, goes back to the client (a
    refusal only if ``refusal_ends``; else it is raised as ``_NotTaken`` for another try)."""
    app = request.app
    provider = target.provider
    url = _url(provider, request)
    headers = _forward_headers(request, provider)
    sniffer = UsageSniffer()
    down: Downstream | None = None
    try:
        async with open_upstream(app[POOL], provider, request.method, url, raw or None, headers, None) as up:
            if up.status >= 500:
                app[UPSTREAMS].failed(target)  # a deployment that keeps failing is taken out, as for routed calls
            else:
                app[UPSTREAMS].succeeded(target, None)
            ctx.streamed = "text/event-stream" in up.headers.get("Content-Type", "")
            out_headers = {k: up.headers[k] for k in _KEEP_RESPONSE if k in up.headers}
            out_headers.update(stream_headers(ctx))
            if up.status in NOT_TAKEN and not refusal_ends:
                raise _NotTaken(web.Response(status=up.status, body=await up.read(), headers=out_headers),
                                provider.name)
            if not ctx.streamed:
                data = await up.read()
                sniffer.body(data)
                _settle(ctx, route, sniffer)
                out_headers[COST_HEADER] = format(ctx.cost.normalize(), "f")
                return web.Response(status=up.status, body=data, headers=out_headers)
            down = Downstream(request, ctx, out_headers, app[SETTINGS].routing.keepalive_seconds, status=up.status)
            try:
                await _relay(ctx, up, down, sniffer)
            finally:
                await down.close()
                _settle(ctx, route, sniffer)
    except UpstreamError as err:
        if down is None or down.resp is None:  # nothing reached the client: it gets the error instead
            raise
        # the provider's stream broke off after its start reached the client, who gets it as it came:
        # cut off where the provider cut it (not ended, so the client cannot take it for whole), never
        # a second response written into the stream
        ctx.upstream_error = type(err).__name__
        _cut_off(request)
    assert down is not None and (down.resp is not None or down.gone)
    return down.resp if down.resp is not None else web.StreamResponse()


async def _relay(ctx: RequestContext, up: UpstreamResponse, down: Downstream, sniffer: UsageSniffer) -> None:
    """The provider's stream to the client, event by event, its usage read on the way."""
    cutter = EventCutter()
    async for chunk in up:
        block = cutter.feed(chunk)
        if not block:
            continue
        if ctx.ttft is None:
            ctx.ttft = ctx.elapsed()
        sniffer.block(block, cutter.separator)
        if not await down.write(block):
            return
    rest = cutter.rest()
    if down.gone:
        return
    if rest:
        await down.write(rest)
    elif not down.committed:
        await down.commit()  # a stream without a single event: its status and headers, an empty body


def _cut_off(request: web.Request) -> None:
    """Close the client's connection once what was written has gone out."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _route(request: web.Request, provider: ProviderSettings, body: dict[str, object]) -> Route:
    """The model this call is for, from the body's "model" or a Gemini path; priced if it is listed."""
    model: str | None = None
    named = body.get("model")
    if isinstance(named, str):
        model = named
    else:
        found = _GEMINI_MODEL.search(request.match_info["path"])
        if found:
            model = found.group(1)
    if model is None:
        return Route(f"{provider.name}/*", provider, "", None)
    catalog = request.app[CATALOG]
    listed = catalog.by_upstream(provider.name, model)  # the provider's own id, as its API is called
    if listed is not None:
        return listed
    try:
        listed = catalog.resolve(f"{provider.name}/{model}", provider.name)
    except GatewayError:  # not in the catalog: proxied all the same, unpriced
        return Route(f"{provider.name}/{model}", provider, model, None)
    return listed


def _json_object(raw: bytes) -> dict[str, object]:
    if not raw or raw[:1] not in (b"{", b" ", b"\n"):
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _url(provider: ProviderSettings, request: web.Request) -> str:
    base = urlsplit(provider.base_url)
    query = "&".join(
        f"{k}={v}" for k, v in request.rel_url.query.items() if k != "key"
    ) if request.query_string else ""
    url = f"{base.scheme}://{base.netloc}/{request.match_info['path']}"
    return f"{url}?{query}" if query else url


def _forward_headers(request: web.Request, provider: ProviderSettings) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST
    )
    headers.update(credential_headers(provider))
    return headers


def _settle(ctx: RequestContext, route: Route, sniffer: UsageSniffer) -> None:
    u = sniffer.usage
    ctx.prompt_tokens, ctx.completion_tokens, ctx.total_tokens = u.prompt_tokens, u.completion_tokens, u.total_tokens
    ctx.cost = u.cost(route.model)
