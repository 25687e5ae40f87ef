"""Spend limits per end user, as a SaaS in front of the gateway uses them: each of its users named by
a request of a limited key may spend up to the key's end_user_limit per window. Embedded and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.endusers.on_redis import RedisSpendCounters
from gateway.endusers.on_sqlite import SqliteSpendCounters
from gateway.state import END_USERS, RECORDER
from tests.conftest import MGMT_KEY, REDIS_URL
from tests.fakes.multi_upstream import MultiGateway, gateway_on

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "openai/gpt-4.1-mini", "messages": MSG, "max_tokens": 10}  # $0.0000188 a request
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}
REDIS_DB = 10  # the Redis database of the redis runs


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def gw(request: pytest.FixtureRequest, aiohttp_server: Any, aiohttp_client: Any,
             tmp_path: Path) -> AsyncIterator[MultiGateway]:
    async with gateway_on(request.param, aiohttp_server, aiohttp_client, tmp_path, redis_db=REDIS_DB) as gateway:
        yield gateway


async def limited_key(gw: MultiGateway, **fields: Any) -> str:
    body = {"name": "saas", "end_user_limit": "0.00004", "end_user_limit_reset": "daily", **fields}
    resp = await gw.client.post("/api/v1/keys", json=body, headers=MGMT)
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["data"]["end_user_limit"] == float(body["end_user_limit"])
    assert data["data"]["end_user_limit_reset"] == "daily"
    key: str = data["key"]
    return key


async def chat(gw: MultiGateway, key: str, named: str | None, **body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    if named is not None:
        headers["X-ARouter-User"] = named
    resp = await gw.client.post("/v1/chat/completions", json={**CHAT, **body}, headers=headers)
    doc: dict[str, Any] = await resp.json()
    return resp.status, doc


async def test_each_end_user_is_stopped_at_the_keys_end_user_limit(gw: MultiGateway) -> None:
    key = await limited_key(gw)
    for _ in range(3):  # 0, 18.8 and 37.6 µ$ spent before each: under 40
        assert (await chat(gw, key, "alice"))[0] == 200
    status, doc = await chat(gw, key, "alice")  # 56.4 µ$ spent: the limit is reached
    assert status == 402
    error = doc["error"]
    assert error["message"] == "End-user spend limit exceeded for this API key."
    assert error["metadata"] == {"end_user": "alice", "limit_usd": 0.00004, "used_usd": 0.0000564,
                                 "limit_reset": "daily"}
    assert (await chat(gw, key, "bob"))[0] == 200  # another end user of the key
    assert (await chat(gw, key, None))[0] == 200  # a request naming none is not limited per end user
    status, _ = await chat(gw, key, None, user="alice")  # OpenAI's user names alice too
    assert status == 402
    other = await gw.new_key()  # a key without the limit
    assert (await chat(gw, other, "alice"))[0] == 200
    assert sum(1 for s in gw.openai.seen if s.path.endswith("/chat/completions")) == 6  # no refused call went out


async def test_the_anthropic_and_gemini_apis_are_limited_too(gw: MultiGateway) -> None:
    key = await limited_key(gw, end_user_limit="0")
    resp = await gw.client.post("/v1/messages", json={"model": "anthropic/claude-sonnet-4.6", "max_tokens": 5,
                                                      "messages": MSG, "metadata": {"user_id": "carol"}},
                                headers={"x-api-key": key})
    assert resp.status == 402 and (await resp.json())["type"] == "error"
    resp = await gw.client.post("/v1beta/models/gemini-2.5-flash:generateContent",
                                json={"contents": [{"parts": [{"text": "hi"}]}]},
                                headers={"x-goog-api-key": key, "X-ARouter-User": "carol"})
    assert resp.status == 402
    assert not gw.anthropic.seen and not gw.gemini.seen


async def test_a_new_window_starts_again_and_a_lost_counter_is_read_from_the_ledger(gw: MultiGateway,
                                                                                   tmp_path: Path) -> None:
    key = await limited_key(gw)
    for _ in range(3):
        await chat(gw, key, "alice")
    assert (await chat(gw, key, "alice"))[0] == 402
    await gw.app[RECORDER].flush()  # the usage rows are in the ledger
    limits = gw.app[END_USERS]
    if isinstance(limits.counters, RedisSpendCounters):  # Redis restarted without its data
        redis = Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + f"/{REDIS_DB}")
        await redis.flushdb()
        await redis.aclose()
    else:  # the host's counter file is gone
        await limits.counters.close()
        limits.counters = SqliteSpendCounters(str(tmp_path / "new-endusers.db"))
    assert (await chat(gw, key, "alice"))[0] == 402  # still spent, as the ledger says
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    limits._clock = lambda: tomorrow  # the next day: a new window
    assert (await chat(gw, key, "alice"))[0] == 200


async def test_the_limit_can_be_changed_and_removed(gw: MultiGateway) -> None:
    key = await limited_key(gw)
    for _ in range(3):
        await chat(gw, key, "alice")
    assert (await chat(gw, key, "alice"))[0] == 402
    listed = await (await gw.client.get("/api/v1/keys", headers=MGMT)).json()
    key_hash = next(k["hash"] for k in listed["data"] if k["name"] == "saas")
    resp = await gw.client.patch(f"/api/v1/keys/{key_hash}", json={"end_user_limit": "1"}, headers=MGMT)
    assert resp.status == 200 and (await resp.json())["data"]["end_user_limit"] == 1
    assert (await chat(gw, key, "alice"))[0] == 200
    resp = await gw.client.patch(f"/api/v1/keys/{key_hash}", json={"end_user_limit": "0"}, headers=MGMT)
    assert (await chat(gw, key, "alice"))[0] == 402
    resp = await gw.client.patch(f"/api/v1/keys/{key_hash}", json={"end_user_limit": None}, headers=MGMT)
    assert resp.status == 200 and (await resp.json())["data"]["end_user_limit"] is None
    assert (await chat(gw, key, "alice"))[0] == 200
