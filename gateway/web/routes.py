"""The route table."""

from __future__ import annotations

from aiohttp import web

from gateway.batches import handlers as batches
from gateway.pipeline import gemini_native
from gateway.pipeline.chat import handle_chat
from gateway.pipeline.embeddings import handle_embeddings
from gateway.pipeline.messages import handle_count_tokens, handle_messages
from gateway.pipeline.proxy import handle_proxy
from gateway.pipeline.responses import handle_responses
from gateway.web import admin, alerts, billing, cache, health, models, usage

PROXY_PATH = (
    r"/{provider:(?!(?:v1|v1beta|api|healthz|readyz|metrics|openapi\.yaml)(?:/|$))[a-z0-9][a-z0-9_.-]*}/{path:.*}"
)


def add_routes(app: web.Application) -> None:
    """Bind every path to its handler."""
    r = app.router
    r.add_get("/healthz", health.healthz)
    r.add_get("/readyz", health.readyz)
    r.add_get("/metrics", health.metrics)
    r.add_get("/openapi.yaml", health.openapi)
    r.add_post("/v1/chat/completions", handle_chat)
    r.add_post("/v1/embeddings", handle_embeddings)
    r.add_post("/v1/responses", handle_responses)
    r.add_post("/v1/messages", handle_messages)
    r.add_post("/v1/messages/count_tokens", handle_count_tokens)
    batches.add_routes(app)  # /v1/messages/batches...
    r.add_get("/v1/models", models.list_models)
    r.add_get("/v1/models/{model:.+}", models.get_model)
    r.add_get("/v1/key", admin.current_key)
    r.add_get("/api/v1/key", admin.current_key)
    r.add_post("/api/v1/keys", admin.create_key)
    r.add_get("/api/v1/keys", admin.list_keys)
    r.add_get("/api/v1/keys/{hash}", admin.get_key)
    r.add_patch("/api/v1/keys/{hash}", admin.update_key)
    r.add_delete("/api/v1/keys/{hash}", admin.delete_key)
    r.add_get("/api/v1/generation", admin.get_generation)
    r.add_get("/api/v1/usage", usage.usage_summary)
    r.add_post("/api/v1/credits", billing.add_credits)
    r.add_get("/api/v1/balance", billing.get_balance)
    r.add_get("/api/v1/transactions", billing.list_transactions)
    r.add_get("/api/v1/alerts", alerts.list_alerts)
    r.add_delete("/api/v1/cache", cache.purge_cache)
    gemini_native.add_routes(app)  # the Gemini API: /v1beta/models/..., POST /v1/models/{model}:{method}
    # Last, and never for the gateway's own first path segments: the provider proxy.
    r.add_route("*", PROXY_PATH, handle_proxy)
