"""What a request leaves behind once answered: its usage row (journalled before the response
completes) and its metrics and access line (after it is on its way). Synchronous, and compiled with
the request path's other pure modules (setup.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.pipeline.context import RequestContext
from gateway.state import ACCESS_LOG, ALERTS, METRICS, RECORDER
from gateway.store.base import Generation


def record(request: web.Request, ctx: RequestContext) -> None:
    """The usage row (journalled before the response completes): for routed requests."""
    route = ctx.route
    key = ctx.key
    if route is None or key is None or ctx.generation_id is None:
        return
    elapsed = ctx.elapsed()
    app = request.app
    if ctx.cost > 0:
        alerts = app.get(ALERTS)
        if alerts is not None:
            alerts.note(key)
    app[RECORDER].record(
        Generation(
            id=ctx.generation_id,
            request_id=ctx.request_id,
            tenant_id=key.tenant_id,
            key_hash=key.hash,
            endpoint=ctx.endpoint,
            model=route.model_id,
            provider=route.provider.name,
            upstream_model=route.upstream_model,
            status=ctx.status,
            streamed=ctx.streamed,
            cancelled=ctx.cancelled,
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            total_tokens=ctx.total_tokens,
            cost=ctx.cost,
            latency_ms=int(elapsed * 1000),
            ttft_ms=int(ctx.ttft * 1000) if ctx.ttft is not None else None,
            finish_reason=ctx.finish_reason,
            app_title=ctx.app_title,
            app_referer=ctx.app_referer,
            end_user=ctx.end_user,
            cached=ctx.cache_hit,
            created_at=datetime.now(UTC),
        )
    )


def observe(request: web.Request, ctx: RequestContext) -> None:
    """Metrics and the access line (after the response is on its way)."""
    app = request.app
    elapsed = ctx.elapsed()
    route = ctx.route
    provider = route.provider.name if route else ""
    model = (route.model_id if route.model is not None else f"{provider}/*") if route else ""
    status = str(ctx.status)
    metrics = app[METRICS]
    metrics.request_done(ctx.endpoint, provider, model, status, elapsed, ctx.ttft, ctx.prompt_tokens,
                         ctx.completion_tokens, ctx.cost)
    if ctx.upstream_error is not None:
        metrics.upstream_errors.labels(provider, ctx.upstream_error).inc()
    key = ctx.key
    access = app.get(ACCESS_LOG)
    if access is not None:
        fields = {
            "msg": "request",
            "request_id": ctx.request_id,
            "method": request.method,
            "path": request.path,
            "status": ctx.status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if key is not None:
            fields["key"] = key.hash[:12]
        if ctx.cache_status is not None:
            fields["cache"] = ctx.cache_status
        if route is not None:
            fields.update(
                model=route.model_id, provider=provider, generation_id=ctx.generation_id,
                prompt_tokens=ctx.prompt_tokens, completion_tokens=ctx.completion_tokens,
                cost=str(ctx.cost), streamed=ctx.streamed, cancelled=ctx.cancelled,
            )
        access.write(fields)
