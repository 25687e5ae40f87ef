"""A request's way through the shared counters, over HTTP: one operation in and one out; a refused
request takes nothing; every inference endpoint is limited."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.admission.on_redis import RedisCounters
from gateway.admission.on_sqlite import SqliteCounters
from gateway.app import create_app
from gateway.pipeline.inbound import ROUTED_ENDPOINTS
from gateway.redis_scripts import RedisScripts
from gateway.sqlite_counters import CounterFile
from gateway.state import ADMISSION, METRICS
from tests.conftest import MGMT_KEY, REDIS_URL, make_settings
from tests.fakes.multi_upstream import start_gateway
from tests.fakes.openai_upstream import FakeOpenAI

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"messages": MSG, "max_tokens": 50}  # holds 0.0001 USD or so
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


@pytest.fixture
def operations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every operation on the shared counters: a transaction of the counter file (a function's or a single
    statement's), a Redis script call."""
    seen: list[str] = []
    run = CounterFile.run
    write = CounterFile.write
    enqueue = RedisScripts._enqueue

    async def counted_run(self: CounterFile, fn: Any) -> Any:
        seen.append("transaction")
        return await run(self, fn)

    async def counted_write(self: CounterFile, sql: str, params: Any) -> None:
        seen.append("transaction")
        await write(self, sql, params)

    def counted_enqueue(self: RedisScripts, *args: Any, **kwargs: Any) -> Any:
        seen.append("script call")
        return enqueue(self, *args, **kwargs)

    monkeypatch.setattr(CounterFile, "run", counted_run)
    monkeypatch.setattr(CounterFile, "write", counted_write)
    monkeypatch.setattr(RedisScripts, "_enqueue", counted_enqueue)
    return seen


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def redis_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "embedded":
        yield None
        return
    url = REDIS_URL.rsplit("/", 1)[0] + "/13"  # a database of its own, emptied: the tenant is "default"
    redis = Redis.from_url(url)
    await redis.flushdb()
    try:
        yield url
    finally:
        await redis.flushdb()
        await redis.aclose()


async def start(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, redis_url: str | None,
                **sections: dict[str, Any]) -> Any:
    fake = FakeOpenAI()
    upstream = await aiohttp_server(fake.app())
    settings = make_settings(str(upstream.make_url("/v1")), f"sqlite:///{tmp_path / 'arouter.db'}", **sections)
    return await aiohttp_client(create_app(dataclasses.replace(settings, redis_url=redis_url)))


async def new_key(client: Any, **fields: Any) -> dict[str, str]:
    resp = await client.post("/api/v1/keys", json={"name": "t", **fields}, headers=MGMT)
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['key']}"}


async def test_one_counter_operation_in_and_one_out(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, redis_url: str | None, operations: list[str]
) -> None:
    client = await start(aiohttp_server, aiohttp_client, tmp_path, redis_url,
                         limits={"requests_per_minute": 100, "tokens_per_minute": 10**6, "concurrency": 4},
                         billing={"prepaid": True})
    auth = await new_key(client, limit="5", limit_reset="daily")
    assert (await client.post("/api/v1/credits", json={"amount": "1"}, headers=MGMT)).status == 201
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=auth)).status == 200
    operations.clear()  # the first request loaded the money counters from the ledger
    for stream in (False, True, False):
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream}, headers=auth)
        await resp.read()
        assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "100"
    assert operations == ["script call" if redis_url else "transaction"] * 6


async def test_refused_requests_take_nothing(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, redis_url: str | None
) -> None:
    client = await start(aiohttp_server, aiohttp_client, tmp_path, redis_url,
                         limits={"requests_per_minute": 2, "concurrency": 1}, billing={"prepaid": True})
    auth = await new_key(client)
    resp = await client.post("/v1/chat/completions", json={"messages": []}, headers=auth)
    assert resp.status == 400  # refused for its content before it was routed
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
        assert resp.status == 402 and resp.headers["X-RateLimit-Remaining"] == "2"  # nothing taken
    assert (await client.post("/api/v1/credits", json={"amount": "1"}, headers=MGMT)).status == 201
    for remaining in ("1", "0"):  # the two requests a minute, and the one slot, are all still there
        resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
        assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == remaining
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


ANTHROPIC = "anthropic/claude-sonnet-4.6"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
ENDPOINTS: dict[str, tuple[str, dict[str, Any], str]] = {  # endpoint: (path, body, header carrying the key)
    "chat": ("/v1/chat/completions", {"messages": MSG}, "Authorization"),
    "responses": ("/v1/responses", {"input": "hi"}, "Authorization"),
    "embeddings": ("/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "x"}, "Authorization"),
    "messages": ("/v1/messages", {"model": ANTHROPIC, "max_tokens": 5, "messages": MSG}, "x-api-key"),
    "count_tokens": ("/v1/messages/count_tokens", {"model": ANTHROPIC, "messages": MSG}, "x-api-key"),
    "gemini_generate": ("/v1beta/models/gemini-2.5-flash:generateContent", GEMINI_BODY, "x-goog-api-key"),
    "gemini_embed": ("/v1beta/models/gemini-embedding-001:embedContent", {"content": {"parts": [{"text": "x"}]}},
                     "x-goog-api-key"),
    "gemini_count_tokens": ("/v1beta/models/gemini-2.5-flash:countTokens", GEMINI_BODY, "x-goog-api-key"),
    "proxy": ("/openai/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": MSG}, "Authorization"),
}


def test_every_routed_endpoint_is_below() -> None:
    assert ROUTED_ENDPOINTS <= ENDPOINTS.keys()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_is_limited(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path,
                                         endpoint: str) -> None:
    gw = await start_gateway(aiohttp_server, aiohttp_client, f"sqlite:///{tmp_path / 'arouter.db'}")
    resp = await gw.client.post("/api/v1/keys", json={"name": "one", "rate_limit": {"requests_per_minute": 1}},
                                headers=MGMT)
    key = (await resp.json())["key"]
    path, body, header = ENDPOINTS[endpoint]
    headers = {header: f"Bearer {key}" if header == "Authorization" else key}
    resp = await gw.client.post(path, json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    resp = await gw.client.post(path, json=body, headers=headers)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_a_client_that_goes_away_while_its_request_is_admitted_leaves_no_slot_behind(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, redis_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client disconnects while its request's limits and hold are being taken (the operation applied,
    its reply not yet back): the server cancels the request, and what the operation took is given back,
    so the key's one concurrency slot is free for the next request."""
    client = await start(aiohttp_server, aiohttp_client, tmp_path, redis_url,
                         limits={"requests_per_minute": 100, "concurrency": 1}, billing={"prepaid": True})
    auth = await new_key(client)
    assert (await client.post("/api/v1/credits", json={"amount": "1"}, headers=MGMT)).status == 201
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=auth)).status == 200  # counters loaded
    applied, reply = asyncio.Event(), asyncio.Event()
    for counters in (RedisCounters, SqliteCounters):
        admit = counters.admit

        async def held(self: Any, *args: Any, _admit: Any = admit) -> Any:
            result = await _admit(self, *args)
            applied.set()
            await reply.wait()
            return result

        monkeypatch.setattr(counters, "admit", held)
    request = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT, headers=auth))
    async with asyncio.timeout(10):
        await applied.wait()
    request.cancel()  # the client goes away: its connection closes
    with pytest.raises(asyncio.CancelledError):
        await request
    metrics = client.server.app[METRICS]
    async with asyncio.timeout(10):
        while not any(labels[3] == "499" for labels in metrics._per_request):
            await asyncio.sleep(0.001)  # until the server has seen it and cancelled the request
    reply.set()
    async with asyncio.timeout(10):
        await client.server.app[ADMISSION].close()  # waits for what the request took to be given back
    monkeypatch.undo()
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert resp.status == 200, await resp.text()  # the slot is free (it would be held for minutes)
