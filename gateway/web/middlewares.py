"""The one middleware: request id, errors in the caller's protocol, metrics, access log, usage row."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.cache.records import HEADER as CACHE_HEADER
from gateway.cache.service import CacheHit
from gateway.codec import json_response
from gateway.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UpstreamError,
)
from gateway.idempotency.records import Pending
from gateway.idempotency.service import Replayed
from gateway.pipeline.context import RequestContext
from gateway.protocols.errors import error_body, protocol_for_path
from gateway.state import (
    ADMISSION,
    BILLING,
    CACHE,
    CTX,
    END_USERS,
    IDEMPOTENCY,
    IDS,
)
from gateway.web.accounting import observe, record

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger("arouter.http")

# What a database or Redis that does not answer raises (an upstream's failures are UpstreamErrors):
# the client gets 503 with Retry-After, not 500.
BACKEND_DOWN: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable (ConnectionError and its kind)
    TimeoutError,
    sqlite3.OperationalError,  # locked, busy, I/O
    RedisConnectionError,
    RedisTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    asyncpg.TooManyConnectionsError,
)


def request_id_from(request: web.Request) -> str:
    """The caller's X-Request-Id when it is sane (printable, at most 128 chars), else a new one."""
    rid = request.headers.get("X-Request-Id")
    if rid and len(rid) <= 128 and rid.isascii() and rid.isprintable():
        return rid
    return request.app[IDS].new("req_")


def render_error(request: web.Request, err: GatewayError) -> web.Response:
    """An error response in the protocol the request path speaks."""
    status, body = error_body(protocol_for_path(request.path), err)
    return json_response(body, status=status, headers=err.headers or None)


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Wrap every request: give it an id and a context, turn any failure into a clean error, account it."""
    ctx = RequestContext(request_id=request_id_from(request))
    request[CTX] = ctx
    settled = True
    try:
        try:
            resp = await handler(request)
        finally:
            if ctx.key is not None and (ctx.billed or ctx.limits is not None):
                settled = await _settle(request, ctx)
    except asyncio.CancelledError:  # the client went away and the server cancelled the handler
        ctx.cancelled = True
        ctx.status = ctx.status or 499
        record(request, ctx)
        if ctx.idempotent is not None:
            request.app[IDEMPOTENCY].abandon(ctx.idempotent)
        if not settled:
            _missed(request, ctx)
        observe(request, ctx)
        raise
    except Replayed as replayed:  # the request's Idempotency-Key has an answer already
        resp = replayed.response
    except CacheHit as hit:  # the response cache has its answer
        resp = hit.response
    except GatewayError as err:
        if isinstance(err, UpstreamError):
            ctx.upstream_error = type(err).__name__
        resp = render_error(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = render_error(request, _http_error(request, exc))
    except BACKEND_DOWN:
        log.exception("a backing service did not answer", extra={"fields": {"request_id": ctx.request_id}})
        resp = render_error(request, Unavailable(
            f"the gateway's database or Redis did not answer; try again shortly (request id {ctx.request_id})",
            headers={"Retry-After": "1"}))
    except Exception:
        log.exception("unhandled error", extra={"fields": {"request_id": ctx.request_id}})
        resp = render_error(request, InternalError(f"internal error (request id {ctx.request_id})"))
    if not resp.prepared and "X-Request-Id" not in resp.headers:  # else the handler set these (stream_headers)
        resp.headers["X-Request-Id"] = ctx.request_id
        resp.headers.update(ctx.rate_headers)
        if ctx.generation_id and "X-Generation-Id" not in resp.headers:
            resp.headers["X-Generation-Id"] = ctx.generation_id
        if ctx.cache_status is not None:
            resp.headers[CACHE_HEADER] = ctx.cache_status
    if not ctx.status or not resp.prepared:
        ctx.status = resp.status
    record(request, ctx)
    if not settled:
        _missed(request, ctx)
    if ctx.cache is not None and not ctx.cache_hit:
        await request.app[CACHE].keep(ctx, ctx.cache, resp)
    if ctx.idempotent is not None:
        await _keep_answer(request, ctx, resp, ctx.idempotent)
    try:
        await resp.prepare(request)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away; aiohttp sees the same when it finishes the response
    finally:
        observe(request, ctx)
    return resp


async def _settle(request: web.Request, ctx: RequestContext) -> bool:
    """Give back what the request took from the shared counters (its concurrency slot, its token
    estimate's error, its money hold) and charge its cost: one counter operation. False when a cost
    to charge may not have been: the operation failed, or found the hold gone."""
    assert ctx.key is not None
    delta = 0
    if ctx.limits is not None and ctx.total_tokens is not None:  # a cache hit used no provider tokens
        delta = (0 if ctx.cache_hit else ctx.total_tokens) - ctx.token_estimate
    key = ctx.key
    if key.end_user_limit is not None and ctx.end_user is not None and ctx.cost > 0:
        try:
            await request.app[END_USERS].charge(key, ctx.end_user, ctx.cost)
        except Exception:  # the ledger has the cost: the end user's counter is read from it when next loaded
            log.exception("end user spend charge failed", extra={"fields": {"request_id": ctx.request_id}})
    try:
        if await request.app[ADMISSION].leave(key, ctx.limits, delta, ctx.billed, ctx.hold, ctx.cost,
                                              ctx.request_id):
            return True
    except Exception:  # the ledger row is still written; the hold and the slot expire by themselves
        log.exception("counter settle failed", extra={"fields": {"request_id": ctx.request_id}})
    return not (ctx.billed and ctx.cost > 0)


def _missed(request: web.Request, ctx: RequestContext) -> None:
    """The settle failed: the counters may lack the cost, which the usage row just recorded will
    bring to the ledger. Its tenant's and key's counters are dropped once that row is written."""
    assert ctx.key is not None
    request.app[BILLING].missed(ctx.key.tenant_id, ctx.key.hash, ctx.hold.request_id if ctx.hold else None)


async def _keep_answer(request: web.Request, ctx: RequestContext, resp: web.StreamResponse, pending: Pending) -> None:
    """Keep the answer of a request that claimed an Idempotency-Key (a whole 2xx answer), or free the
    key. A stream's answer is what it wrote; it is whole unless the client left or it ended in error."""
    whole = not ctx.cancelled and ctx.finish_reason != "error" and ctx.upstream_error is None
    if resp.prepared:
        sent = ctx.sent.body() if ctx.sent is not None else None
        body, whole = sent or b"", whole and sent is not None
    elif isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        body = resp.body
    else:
        body, whole = b"", False
    # shielded: a client leaving now must not leave the key claimed (retries would get 409 for long)
    await asyncio.shield(request.app[IDEMPOTENCY].finish(pending, resp.status, tuple(resp.headers.items()), body,
                                                         complete=whole))


def _http_error(request: web.Request, exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.status == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if exc.status == 413:
        return PayloadTooLarge(exc.reason)
    return InvalidRequest(exc.reason)
