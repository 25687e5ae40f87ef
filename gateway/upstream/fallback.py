"""Fallback across candidates and retries within one: ``run_candidates -> with_retries -> serve``.

``serve`` sends the request to one deployment and either returns the response to the client or
raises an ``UpstreamError`` before the first byte reached the client (after that, failures end the
stream in-band and never come back here). A retryable failure (429, 5xx, timeout, connection) is
retried on the same candidate with jittered exponential backoff, honouring the upstream's
Retry-After up to the provider's ``retry_max_wait``, bounded by its ``retries`` and by the request's
``retry_budget``; then the next candidate is tried. A non-retryable one (the upstream refused the
request itself, 4xx) comes back at once. When every candidate failed, the last error comes back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway.errors import GatewayError, Unavailable, UpstreamError, UpstreamRateLimited
from gateway.pipeline.context import RequestContext
from gateway.routing.catalog import Route
from gateway.routing.upstreams import Target, Upstreams
from gateway.settings import RoutingSettings

T = TypeVar("T")
Serve = Callable[[Route, Target], Awaitable[T]]
BASE_BACKOFF = 0.25


async def run_candidates(
    ctx: RequestContext,
    candidates: Sequence[Route],
    upstreams: Upstreams,
    routing: RoutingSettings,
    serve: Serve[T],
    *,
    timed: bool = True,
) -> T:
    """Serve from the first candidate that succeeds; ``ctx.route`` names the one that answered.
    ``timed``: the answer's time feeds the deployment's observed latency (``provider.sort: latency``);
    False for answers that generate nothing (embeddings, token counts), whose times would flatter it."""
    deadline = time.monotonic() + routing.retry_budget
    last: GatewayError | None = None
    for route in candidates:
        ctx.route = route
        try:
            return await with_retries(route, upstreams, deadline, serve, ctx, timed=timed)
        except (UpstreamError, Unavailable) as err:
            if not err.retryable:
                raise
            last = err
            ctx.attempts_failed += 1
    assert last is not None
    raise last


async def with_retries(
    route: Route, upstreams: Upstreams, deadline: float, serve: Serve[T], ctx: RequestContext, *, timed: bool = True
) -> T:
    """Serve one candidate, retrying retryable failures within its budget; the deployment's observed
    latency is the time to the first streamed byte, or to the whole answer when not streamed."""
    provider = route.provider
    attempt = 0
    while True:
        target = upstreams.pick(provider)  # Unavailable when every deployment is cooling down
        started = time.monotonic()
        ctx.new_try()  # of this try only: an earlier one's timing or failure is not its
        try:
            result = await serve(route, target)
        except UpstreamError as err:
            if not err.retryable:
                upstreams.succeeded(target, None)  # the upstream answered; the request was the problem
                raise
            if not isinstance(err, UpstreamRateLimited):  # a rate limit says nothing about health
                upstreams.failed(target)
            if attempt >= provider.retries:
                raise
            wait = backoff(attempt, err, provider.retry_max_wait)
            if time.monotonic() + wait > deadline:
                raise
            attempt += 1
            await asyncio.sleep(wait)
            continue
        took: float | None = None
        if timed:
            took = time.monotonic() - started
            if ctx.ttft is not None:
                took = min(took, ctx.ttft)
        upstreams.succeeded(target, took)
        return result


def backoff(attempt: int, err: UpstreamError, cap: float) -> float:
    """Seconds to wait before the next try: the upstream's Retry-After when it gave one, else
    exponential from 0.25 s with full jitter; never more than ``cap``."""
    retry_after = err.headers.get("Retry-After")
    if retry_after is not None:
        try:
            return min(cap, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return min(cap, random.uniform(0, BASE_BACKOFF * 2**attempt))
