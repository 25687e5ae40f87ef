"""The response cache: a byte-identical request of the same tenant gets the kept answer, free.

A request uses the cache when its ``X-ARouter-Cache`` header says so (``mode = "opt-in"``, the
default) or unless it says not to (``mode = "on"``). It is looked up once the request is admitted
(its key's limits taken, its model allowed); a hit is answered from the entry without reaching a
provider and is not charged (its usage row says ``cached``, cost 0). A miss runs as usual and its
answer, when a whole 200 within ``max_entry_bytes`` (a stream's too, when it ended well), is kept
for the request's TTL before it is sent (a stream's before its end), so the next identical request
finds it; a kept stream is sent again whole, at once.
A store that does not answer makes a lookup a miss and a keep a no-op: the cache never fails a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from gateway.cache.records import (
    HEADER,
    Directive,
    DirectiveError,
    Entry,
    Mode,
    Plan,
    directive,
    hit_body,
    kept_headers,
    pack,
    slot,
    unpack,
)
from gateway.cache.store import CacheStore
from gateway.codec import kept_response
from gateway.errors import InvalidRequest
from gateway.pipeline.capture import widened
from gateway.pipeline.context import RequestContext

log = logging.getLogger("arouter.cache")

COST_HEADER = "X-ARouter-Cost"


class CacheHit(Exception):
    """The request's answer is kept: ``response`` is it, to send instead of calling a provider."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("cache hit")
        self.response = response


class ResponseCache:
    def __init__(
        self, store: CacheStore, *, mode: Mode, ttl_seconds: float, max_ttl_seconds: float, max_entry_bytes: int,
        clock: Callable[[], float] = time.time, count: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.ttl_seconds = ttl_seconds
        self.max_ttl_seconds = max_ttl_seconds
        self.max_entry_bytes = max_entry_bytes
        self._clock = clock  # Unix seconds: when an entry was kept, its Age on a hit
        self._count = count  # hit, miss, refresh, kept, error

    def plan(self, request: web.Request, tenant: str, endpoint: str, body: bytes) -> Plan | None:
        """The request's use of the cache (None: it does not use it); 400 for a header it cannot read."""
        try:
            wants: Directive | None = directive(self.mode, request.headers, self.ttl_seconds, self.max_ttl_seconds)
        except DirectiveError as err:
            raise InvalidRequest(str(err), param=err.header) from None
        if wants is None:
            return None
        where = slot(tenant, endpoint, request.method, request.path, request.query.items(), request.headers, body)
        return Plan(where, wants.lookup, wants.ttl)

    async def lookup(self, ctx: RequestContext, plan: Plan, *, streamed: bool) -> None:
        """Look for the request's answer once it is admitted and routed: raise ``CacheHit`` with it,
        or note what the response will say (MISS, REFRESH) and, for a stream, hold what it sends."""
        if streamed:
            ctx.sent = widened(ctx.sent, self.max_entry_bytes)
        if not plan.lookup:
            ctx.cache_status = "REFRESH"
            self._count("refresh")
            return
        ctx.cache_status = "MISS"
        try:
            data = await self.store.get(plan.slot)
        except Exception:
            log.warning("the response cache did not answer; the request goes to its provider", exc_info=True,
                        extra={"fields": {"request_id": ctx.request_id}})
            self._count("error")
            return
        entry = unpack(data) if data is not None else None
        if entry is None:
            self._count("miss")
            return
        self._count("hit")
        raise CacheHit(self._serve(ctx, entry))

    def _serve(self, ctx: RequestContext, entry: Entry) -> web.Response:
        """The hit's answer; the request's context takes the entry's usage (recorded at cost 0)."""
        ctx.cache_hit = True
        ctx.cache_status = "HIT"
        for route in ctx.candidates:  # the route that made the answer, if still among the request's
            if route.model_id == entry.model and route.provider.name == entry.provider:
                ctx.route = route
                break
        ctx.prompt_tokens = entry.prompt_tokens
        ctx.completion_tokens = entry.completion_tokens
        ctx.total_tokens = entry.total_tokens
        ctx.finish_reason = entry.finish_reason
        generation_id = ctx.generation_id or ""
        resp = kept_response(entry.status, entry.headers, hit_body(entry.body, entry.generation_id, generation_id))
        resp.headers.update(ctx.rate_headers)
        resp.headers["X-Request-Id"] = ctx.request_id
        resp.headers["X-Generation-Id"] = generation_id
        resp.headers[COST_HEADER] = "0"
        resp.headers[HEADER] = "HIT"
        resp.headers["Age"] = str(max(0, int(self._clock() - entry.stored_at)))
        return resp

    async def keep(self, ctx: RequestContext, plan: Plan, resp: web.StreamResponse) -> None:
        """Keep a miss's answer for the next: a whole 200 (a stream that ended well: not cut short,
        left or ended in error) within ``max_entry_bytes``."""
        route = ctx.route
        if (
            resp.status != 200 or route is None or ctx.upstream_error is not None or ctx.generation_id is None
            or ctx.cancelled or ctx.finish_reason == "error"
        ):
            return
        body: object
        if resp.prepared:  # a stream: what it sent
            body = ctx.sent.body() if ctx.sent is not None else None
        else:
            body = resp.body if isinstance(resp, web.Response) else None
        if not isinstance(body, bytes) or len(body) > self.max_entry_bytes:
            return
        entry = Entry(
            status=resp.status, headers=kept_headers(resp.headers.items()), body=body,
            generation_id=ctx.generation_id, model=route.model_id, provider=route.provider.name,
            upstream_model=route.upstream_model, prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens, total_tokens=ctx.total_tokens,
            finish_reason=ctx.finish_reason, stored_at=self._clock(),
        )
        try:
            await self.store.put(plan.slot, pack(entry), plan.ttl)
        except Exception:
            log.warning("the response cache did not keep an answer", exc_info=True,
                        extra={"fields": {"request_id": ctx.request_id}})
            self._count("error")
            return
        self._count("kept")

    async def purge(self, tenant: str) -> int:
        """Forget every answer kept for ``tenant``; how many there were."""
        return await self.store.purge(f"{tenant}:")

    async def close(self) -> None:
        await self.store.close()
