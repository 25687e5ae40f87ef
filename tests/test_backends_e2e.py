"""The same user story on both deployments: embedded (SQLite, no Redis) and Postgres with Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import RECORDER, STORE
from tests.conftest import MGMT_KEY, POSTGRES_URL, REDIS_URL, make_settings
from tests.fakes.openai_upstream import FakeOpenAI

MSG = [{"role": "user", "content": "hi"}]
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


@pytest.fixture(params=["embedded", pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis])])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    if request.param == "embedded":
        yield {"db": f"sqlite:///{tmp_path / 'arouter.db'}", "redis": None}
        return
    schema = f"arouter_e2e_{os.urandom(5).hex()}"
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    url = REDIS_URL.rsplit("/", 1)[0] + "/15"  # a database of its own, emptied: a fresh deployment
    redis = Redis.from_url(url)
    await redis.flushdb()
    try:
        yield {"db": f"{POSTGRES_URL}?search_path={schema}", "redis": url}
    finally:
        await redis.flushdb()
        await redis.aclose()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_keys_limits_and_money_behave_the_same(
    deployment: dict[str, Any], aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    settings = make_settings(str(upstream.make_url("/v1")), deployment["db"], limits={"requests_per_minute": 5},
                             billing={"prepaid": True})
    if deployment["redis"]:
        import dataclasses

        settings = dataclasses.replace(settings, redis_url=deployment["redis"])
    client = await aiohttp_client(create_app(settings))
    resp = await client.post("/api/v1/keys", json={"name": "story"}, headers=MGMT)
    auth = {"Authorization": f"Bearer {(await resp.json())['key']}"}

    resp = await client.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 50}, headers=auth)
    assert resp.status == 402 and resp.headers["X-RateLimit-Remaining"] == "5"  # refused: it took no request
    assert (await client.post("/api/v1/credits", json={"amount": "0.001"}, headers=MGMT)).status == 201
    statuses = [r.status for r in await asyncio.gather(*(
        client.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 50}, headers=auth) for _ in range(6)
    ))]
    assert statuses.count(200) == 5 and statuses.count(429) == 1  # the 5 per minute, all still there
    await client.app[RECORDER].flush()
    assert await client.app[STORE].balance("default") == Decimal("0.001") - 5 * Decimal("0.0000188")
    txns = await (await client.get("/api/v1/transactions", headers=auth)).json()
    assert [t["type"] for t in txns["transactions"]] == ["usage"] * 5 + ["credit"]
    ready = await (await client.get("/readyz")).json()
    assert ready["checks"]["database"] == "ok"
    if deployment["redis"]:
        assert ready["checks"]["redis"] == "ok"
