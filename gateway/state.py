"""Typed keys for everything the app and each request carry (no module globals)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from gateway.admission.service import Admission
from gateway.alerts.service import Alerts
from gateway.auth.keycache import KeyCache
from gateway.batches.runner import BatchRunner
from gateway.billing.service import Billing
from gateway.cache.service import ResponseCache
from gateway.endusers.service import EndUserLimits
from gateway.idempotency.service import Idempotency
from gateway.logs import AccessLog
from gateway.metrics import Metrics
from gateway.pipeline.context import RandomIds, RequestContext
from gateway.pipeline.recorder import UsageRecorder
from gateway.ratelimit.gcra import Limits
from gateway.routing.catalog import Catalog
from gateway.routing.upstreams import Upstreams
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.tokenizer import Tokenizer
from gateway.upstream.pool import Pool

SETTINGS = web.AppKey("settings", Settings)
ACCESS_LOG = web.AppKey("access_log", AccessLog)  # absent when [server] access_log is false
STORE = web.AppKey("store", Store)
KEYCACHE = web.AppKey("keycache", KeyCache)
CATALOG = web.AppKey("catalog", Catalog)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
POOL = web.AppKey("upstream_pool", Pool)  # keep-alive connections to the upstreams
METRICS = web.AppKey("metrics", Metrics)
RECORDER = web.AppKey("recorder", UsageRecorder)
BILLING = web.AppKey("billing", Billing)
ADMISSION = web.AppKey("admission", Admission)  # a request's limits and money, taken and given back
TOKENIZER = web.AppKey("tokenizer", Tokenizer)  # offline counts (count_tokens for non-Anthropic models)
IDS = web.AppKey("ids", RandomIds)  # request and generation ids
CTX = web.RequestKey("ctx", RequestContext)
LIMITS_DUE = web.RequestKey("limits_due", Limits)  # admitted, limits to take with the money when routed
INTERNAL_TOKEN = web.AppKey("internal_token", str)  # authenticates the batch runner's loopback calls
BATCH_RUNNER = web.AppKey("batch_runner", BatchRunner)  # runs Message Batch requests in the background
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)  # Idempotency-Key claims and kept answers
END_USERS = web.AppKey("end_users", EndUserLimits)  # spend limits per end user of a key
# Optional: absent without [alerts] webhook_url.
ALERTS = web.AppKey("alerts", Alerts)  # budget alerts
# Optional: absent when [cache] mode = "off".
CACHE = web.AppKey("cache", ResponseCache)  # the response cache

# Optional: present only when AROUTER_REDIS_URL is set.
REDIS = web.AppKey("redis", Redis)
