"""Limits hold exactly across two gateway processes with two workers each on one Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import MGMT_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.processes import RedisServer, serve, write_config

pytestmark = [pytest.mark.slow, pytest.mark.redis]
MSG = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    server.stop()


async def test_200_concurrent_on_two_hosts_give_exactly_50(
    tmp_path: Path, aiohttp_server: Any, redis_server: RedisServer
) -> None:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    config = write_config(tmp_path / "arouter.toml", str(upstream.make_url("/v1")))
    db = f"sqlite:///{tmp_path / 'shared.db'}"  # the keys table both hosts read (Postgres in production)
    env = {"AROUTER_REDIS_URL": redis_server.url, "AROUTER_DATABASE_URL": db}
    async with serve(tmp_path / "a", config, **env) as a, serve(tmp_path / "b", config, **env) as b:
        conn = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=conn) as session:
            async with session.post(f"{a}/api/v1/keys", headers={"Authorization": f"Bearer {MGMT_KEY}"},
                                    json={"name": "fifty", "rate_limit": {"requests_per_minute": 50}}) as resp:
                key = (await resp.json())["key"]
            auth = {"Authorization": f"Bearer {key}"}

            async def one(base: str) -> tuple[int, str | None]:
                async with session.post(f"{base}/v1/chat/completions", json=MSG, headers=auth) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")

            results = await asyncio.gather(*(one(a if i % 2 else b) for i in range(200)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 50 and statuses.count(429) == 150
    assert all(ra is not None and int(ra) >= 1 for s, ra in results if s == 429)
    assert len(fake.seen) == 50


async def test_redis_going_away_fails_open_and_comes_back(
    tmp_path: Path, aiohttp_server: Any, redis_server: RedisServer
) -> None:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    config = write_config(tmp_path / "arouter.toml", str(upstream.make_url("/v1")),
                          "[limits]\nrequests_per_minute = 1000\nredis_failure = \"open\"\n")
    closed_cfg = write_config(tmp_path / "closed.toml", str(upstream.make_url("/v1")),
                              "[limits]\nrequests_per_minute = 1000\nredis_failure = \"closed\"\n")
    env = {"AROUTER_REDIS_URL": redis_server.url, "AROUTER_DATABASE_URL": f"sqlite:///{tmp_path / 'db.db'}"}
    async with serve(tmp_path / "open", config, **env) as gw, serve(tmp_path / "closed", closed_cfg, **env) as gc:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{gw}/api/v1/keys", headers={"Authorization": f"Bearer {MGMT_KEY}"},
                                    json={"name": "k"}) as resp:
                auth = {"Authorization": f"Bearer {(await resp.json())['key']}"}

            async def burst(base: str, n: int = 20) -> list[int]:
                async def one() -> int:
                    async with session.post(f"{base}/v1/chat/completions", json=MSG, headers=auth,
                                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        await resp.read()
                        return resp.status
                return list(await asyncio.gather(*(one() for _ in range(n))))

            assert set(await burst(gw)) == {200}
            redis_server.stop()
            assert set(await burst(gw)) == {200}  # served unlimited, never hung (10 s client timeout)
            assert set(await burst(gc)) == {503}  # the closed policy refuses cleanly
            async with session.get(f"{gw}/metrics") as resp:
                text = await resp.text()
            assert any(line.startswith('arouter_ratelimit_backend_failures_total{policy="open"}')
                       and float(line.rsplit(" ", 1)[1]) >= 20 for line in text.splitlines())
            await redis_server.start()
            statuses: list[int] = []
            for _ in range(50):  # the client reconnects on its own
                statuses = await burst(gc, 4)
                if set(statuses) == {200}:
                    break
                await asyncio.sleep(0.1)
            assert set(statuses) == {200}
            async with session.post(f"{gc}/v1/chat/completions", json=MSG, headers=auth) as resp:
                assert resp.headers["X-RateLimit-Limit"] == "1000"
