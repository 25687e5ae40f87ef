"""/healthz (alive, no auth), /readyz (store and Redis answer), /metrics, /openapi.yaml."""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

from gateway.codec import json_response
from gateway.state import METRICS, REDIS, STORE


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database (and Redis, if configured) answer within two seconds, else 503."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            await request.app[STORE].ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    redis = request.app.get(REDIS)
    if redis is not None:
        try:
            async with asyncio.timeout(2):
                await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("gateway").joinpath("openapi.yaml").read_bytes()
    return web.Response(body=text, content_type="application/yaml")
