"""The only wiring module: build the aiohttp application from settings."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from gateway.admission.counters import Counters
from gateway.admission.on_redis import RedisCounters
from gateway.admission.on_sqlite import SqliteCounters
from gateway.admission.service import Admission
from gateway.alerts.service import Alerts
from gateway.alerts.webhook import Webhook
from gateway.auth.apikey import hash_key, label_for
from gateway.auth.keycache import KeyCache
from gateway.batches.internal import internal_token
from gateway.batches.runner import BatchRunner, concurrency_from_env
from gateway.billing.service import Billing
from gateway.cache.on_redis import RedisCache
from gateway.cache.on_sqlite import SqliteCache
from gateway.cache.service import ResponseCache
from gateway.cache.store import CacheStore
from gateway.endusers.counters import SpendCounters
from gateway.endusers.on_redis import RedisSpendCounters
from gateway.endusers.on_sqlite import SqliteSpendCounters
from gateway.endusers.service import EndUserLimits
from gateway.idempotency.on_redis import RedisIdempotency
from gateway.idempotency.on_sqlite import SqliteIdempotency
from gateway.idempotency.service import Idempotency
from gateway.idempotency.store import IdempotencyStore
from gateway.logs import AccessLog, configure_logging
from gateway.metrics import FLUSH_SECONDS, Metrics
from gateway.pipeline.context import RandomIds
from gateway.pipeline.recorder import UsageRecorder
from gateway.routing.catalog import Catalog
from gateway.routing.upstreams import Upstreams
from gateway.server import GRACEFUL_SECONDS, KEEPALIVE_SECONDS
from gateway.settings import Settings, load_settings
from gateway.state import (
    ACCESS_LOG,
    ADMISSION,
    ALERTS,
    BATCH_RUNNER,
    BILLING,
    CACHE,
    CATALOG,
    END_USERS,
    IDEMPOTENCY,
    IDS,
    INTERNAL_TOKEN,
    KEYCACHE,
    METRICS,
    POOL,
    RECORDER,
    REDIS,
    SETTINGS,
    STORE,
    TOKENIZER,
    UPSTREAMS,
)
from gateway.store import open_store
from gateway.store.base import ApiKey, Store
from gateway.tokenizer import Tokenizer
from gateway.upstream.pool import Pool
from gateway.web.middlewares import gateway_middleware
from gateway.web.routes import add_routes

log = logging.getLogger("arouter")

DEFAULT_TENANT = "default"
REVOKED_MANAGEMENT_KEY = "AROUTER_MANAGEMENT_KEY names a revoked key: it stays revoked (create another one)"
REDIS_CONNECTIONS = 256  # per worker


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    """The gateway app; resources open in cleanup contexts and close in reverse order."""
    app = web.Application(middlewares=[gateway_middleware], client_max_size=settings.server.max_body_bytes)
    app[SETTINGS] = settings
    app[CATALOG] = Catalog(settings)
    app[UPSTREAMS] = Upstreams(settings)
    app[METRICS] = Metrics()
    app[IDS] = RandomIds()
    if settings.server.access_log:
        app[ACCESS_LOG] = AccessLog(1)  # stdout
        app.on_cleanup.append(_flush_access_log)
    app[TOKENIZER] = Tokenizer()
    app.cleanup_ctx.append(_metrics_ctx)
    app.cleanup_ctx.append(_store_ctx(store))
    if settings.alerts.webhook_url:
        app.cleanup_ctx.append(_alerts_ctx)
    app.cleanup_ctx.append(_pool_ctx)
    if settings.redis_url:
        app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_limiter_ctx)
    app.cleanup_ctx.append(_idempotency_ctx)
    app.cleanup_ctx.append(_end_users_ctx)
    if settings.cache.mode != "off":
        app.cleanup_ctx.append(_cache_ctx)
    app[INTERNAL_TOKEN] = internal_token()
    app.cleanup_ctx.append(_batches_ctx)
    add_routes(app)
    return app


async def _flush_access_log(app: web.Application) -> None:
    app[ACCESS_LOG].flush()


async def app_factory() -> web.AppRunner:
    """Entry point for gunicorn's aiohttp worker: settings from the environment, JSON logs on stdout.

    It returns the runner so that handler cancellation is on: a client that disconnects cancels its
    handler at once, which closes the upstream request (within milliseconds, not at the next write)
    and settles what was used so far.
    """
    configure_logging(os.environ.get("AROUTER_LOG_LEVEL", "INFO"))
    app = create_app(load_settings(None, os.environ))
    app.on_startup.append(_settle_heap)
    return web.AppRunner(
        app, handler_cancellation=True, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS,
        shutdown_timeout=GRACEFUL_SECONDS * 0.95,
    )


async def _settle_heap(app: web.Application) -> None:
    """Once the worker has loaded everything it keeps (modules, settings, catalog, tokenizer), take
    those objects out of the garbage collector's sight (``gc.freeze``) and collect the young
    generation less often: a collection then walks only what requests allocate, so its pauses stay
    short and rare on the hot path."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _store_ctx(given: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        store = given if given is not None else await open_store(settings.database_url)
        try:
            if given is None:
                await store.migrate()
            await store.ensure_tenant(DEFAULT_TENANT, "Default tenant")
            if settings.management_key and not await register_management_key(
                store, settings.management_key, DEFAULT_TENANT
            ):
                log.warning(REVOKED_MANAGEMENT_KEY)
            app[STORE] = store
            cache = KeyCache(store, settings.key_cache_poll_seconds)
            await cache.start()
            app[KEYCACHE] = cache
            recorder = UsageRecorder(store, app[METRICS], journal_dir=journal_dir(settings))
            await recorder.start()
            app[RECORDER] = recorder
            _warn_missing_keys(settings)
            try:
                yield
            finally:
                await recorder.stop()
                await cache.stop()
        finally:
            if given is None:
                await store.close()

    return ctx


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL] = Pool(keepalive=60.0)
    yield
    await pool.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    assert url is not None
    # A blocking pool: past max_connections a call waits (up to its timeout) for a free connection
    # instead of failing at once. Calls of concurrent requests share round trips (redis_scripts), so a
    # worker rarely needs more than a few. No socket timeout: every call is bounded by a timeout of its
    # own around the whole exchange, and a socket timeout costs a task per read and write.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=2, socket_connect_timeout=2, socket_timeout=None
    )
    client = Redis.from_pool(pool)
    app[REDIS] = client
    yield
    await client.aclose()


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Requests' tallies written into the metrics every FLUSH_SECONDS, and once more at the end."""
    metrics = app[METRICS]
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal timer
        metrics.flush()
        timer = loop.call_later(FLUSH_SECONDS, tick)

    timer = loop.call_later(FLUSH_SECONDS, tick)
    yield
    timer.cancel()
    metrics.flush()


async def _limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    """The shared counters, rate limits and money: on Redis when configured, else in the host's file."""
    settings = app[SETTINGS]
    counters: Counters
    if settings.redis_url:
        metrics = app[METRICS]
        counters = RedisCounters(
            app[REDIS], on_failure=settings.limits.redis_failure,
            on_error=lambda policy: metrics.limiter_failures.labels(policy).inc(),
        )
    else:
        counters = SqliteCounters(limiter_path(settings))
    billing = Billing(counters.accounts, app[STORE], prepaid=settings.prepaid, flush=app[RECORDER].flush)
    app[BILLING] = billing
    admission = Admission(counters, billing, lease_size=settings.limits.lease_size,
                          lease_seconds=settings.limits.lease_seconds)
    app[ADMISSION] = admission
    recorder = app[RECORDER]
    recorder.before_write = admission.charge_leases  # a lease's costs reach the counters before its rows
    if not settings.prepaid:
        await counters.accounts.forget_balances()  # not kept current while prepaid is off: reload if it comes back
    yield
    await admission.close()
    recorder.before_write = None
    await billing.close()
    await counters.close()


async def _idempotency_ctx(app: web.Application) -> AsyncIterator[None]:
    """Idempotency-Key claims and kept answers: on Redis when configured, else in a file of the host's."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    store: IdempotencyStore
    if settings.redis_url:
        store = RedisIdempotency(app[REDIS])
    else:
        store = SqliteIdempotency(idempotency_path(settings))
    # a claim outlives its request (a worker that died running it) no longer than the longest request
    longest = max((p.timeouts.total for p in settings.providers.values()), default=900.0)
    idempotency = Idempotency(store, keep_seconds=settings.server.idempotency_seconds,
                              running_seconds=longest + settings.routing.retry_budget + 60.0,
                              max_bytes=settings.server.idempotency_max_bytes,
                              count=lambda outcome: metrics.idempotency.labels(outcome).inc())
    app[IDEMPOTENCY] = idempotency
    yield
    await idempotency.close()


async def _end_users_ctx(app: web.Application) -> AsyncIterator[None]:
    """End users' spend counters: on Redis when configured, else in a file of the host's."""
    settings = app[SETTINGS]
    counters: SpendCounters
    if settings.redis_url:
        counters = RedisSpendCounters(app[REDIS])
    else:
        counters = SqliteSpendCounters(beside_limits(settings, "-endusers"))
    limits = EndUserLimits(counters, app[STORE])
    app[END_USERS] = limits
    yield
    await limits.close()


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Budget alerts: checked in the background, POSTed to the configured webhook."""
    conf = app[SETTINGS].alerts
    metrics = app[METRICS]
    alerts = Alerts(
        app[STORE], conf, Webhook(conf.webhook_url, conf.secret, conf.timeout_seconds),
        flush=app[RECORDER].flush, count=lambda kind, outcome: metrics.alerts.labels(kind, outcome).inc(),
    )
    app[ALERTS] = alerts
    alerts.start()
    yield
    await alerts.close()


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The response cache: on Redis when configured, else in a file of the host's."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    store: CacheStore
    if settings.redis_url:
        store = RedisCache(app[REDIS])
    else:
        store = SqliteCache(cache_path(settings))
    conf = settings.cache
    cache = ResponseCache(
        store, mode=conf.mode, ttl_seconds=conf.ttl_seconds, max_ttl_seconds=conf.max_ttl_seconds,
        max_entry_bytes=conf.max_entry_bytes, count=lambda outcome: metrics.cache.labels(outcome).inc(),
    )
    app[CACHE] = cache
    yield
    await cache.close()


async def _batches_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Message Batch runner: it calls this gateway's own /v1/messages on loopback."""
    server = app[SETTINGS].server
    host = "127.0.0.1" if server.host in ("", "0.0.0.0", "::") else server.host
    base_url = f"http://{f'[{host}]' if ':' in host else host}:{server.port}"
    runner = BatchRunner(app[STORE], app[INTERNAL_TOKEN], base_url=base_url, concurrency=concurrency_from_env())
    app[BATCH_RUNNER] = runner
    await runner.start()
    yield
    await runner.stop()


def limiter_path(settings: Settings) -> str:
    """The embedded hot-counter file (limits, money holds): configured, else beside the SQLite database."""
    if settings.limits.state_path:
        return settings.limits.state_path
    if settings.database_url.startswith("sqlite:///"):
        db = Path(settings.database_url[len("sqlite:///") :])
        return str(db.with_name(db.stem + "-limits.db"))
    return "var/arouter-limits.db"


def idempotency_path(settings: Settings) -> str:
    """The embedded Idempotency-Key file: beside the hot-counter file."""
    return beside_limits(settings, "-idempotency")


def cache_path(settings: Settings) -> str:
    """The embedded response cache file: beside the hot-counter file."""
    return beside_limits(settings, "-cache")


def beside_limits(settings: Settings, suffix: str) -> str:
    """A file of the host's beside the hot-counter file: its name with ``suffix`` added."""
    limits = Path(limiter_path(settings))
    return str(limits.with_name(limits.stem + suffix + (limits.suffix or ".db")))


def journal_dir(settings: Settings) -> str:
    """Where workers journal finished requests: configured, else beside the SQLite database, else var/."""
    if settings.journal_dir:
        return settings.journal_dir
    if settings.database_url.startswith("sqlite:///"):
        return str(Path(settings.database_url[len("sqlite:///") :]).parent / "journal")
    return "var/journal"


async def register_management_key(store: Store, secret: str, tenant_id: str) -> bool:
    """Make sure a configured management key exists (by hash) for the tenant. False when it exists
    disabled (revoked with ``arouter keys revoke``): it stays so."""
    key_hash = hash_key(secret)
    found = await store.get_key(key_hash)
    if found is not None:
        return not found.disabled
    now = datetime.now(UTC)
    key = ApiKey(
        hash=key_hash, tenant_id=tenant_id, kind="mgmt", name="AROUTER_MANAGEMENT_KEY", label=label_for(secret),
        disabled=False, limit=None, limit_reset=None, allowed_providers=None, allowed_models=None,
        expires_at=None, created_at=now, updated_at=now,
    )
    try:
        await store.insert_key(key)
    except Exception:
        if await store.get_key(key_hash) is None:  # another worker won the race: fine
            raise
    return True


def _warn_missing_keys(settings: Settings) -> None:
    for p in settings.providers.values():
        if p.api_key_env and not p.api_key:
            log.warning("provider %s: %s is not set; its requests will fail upstream", p.name, ", ".join(p.api_key_env))
